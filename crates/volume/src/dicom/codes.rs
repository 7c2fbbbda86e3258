//! SNOMED CT codes for segment descriptions (DICOM CID 7150/7151/7166), chosen from a label's name.
//!
//! The names are those of the paper's datasets (FLARE, AMOS, MSD, KiTS, LiTS, TCIA Pancreas-CT)
//! and TotalSegmentator-style `kidney_right`: case and separators do not matter. Organs are
//! "Anatomical Structure" with the organ as the property type and a Right/Left modifier where the
//! name says so; tumours, cysts, lesions, oedema and necrosis are "Morphologically Abnormal
//! Structure" with the organ named in the label (if any) as the anatomic region. Anything else is
//! described as Tissue / Tissue, its label keeping the name. Values and meanings are those of
//! pydicom's `pydicom.sr.codedict.codes.SCT`.

/// One coded concept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    pub value: &'static str,
    pub scheme: &'static str,
    pub meaning: &'static str,
}

const fn sct(value: &'static str, meaning: &'static str) -> Code {
    Code {
        value,
        scheme: "SCT",
        meaning,
    }
}

/// How a segment is described: category, property type, its laterality and anatomic region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentCodes {
    pub category: Code,
    pub property: Code,
    pub modifier: Option<Code>,
    pub region: Option<Code>,
}

pub const ANATOMICAL_STRUCTURE: Code = sct("91723000", "Anatomical Structure");
pub const ABNORMAL_STRUCTURE: Code = sct("49755003", "Morphologically Abnormal Structure");
pub const TISSUE: Code = sct("85756007", "Tissue");
pub const RIGHT: Code = sct("24028007", "Right");
pub const LEFT: Code = sct("7771000", "Left");

/// Organs by the words that name them; earlier entries win ("left atrium" before "heart").
const ORGANS: &[(&[&str], Code)] = &[
    (&["liver"], sct("10200004", "Liver")),
    (&["spleen"], sct("78961009", "Spleen")),
    (&["pancreas"], sct("15776009", "Pancreas")),
    (&["kidney"], sct("64033007", "Kidney")),
    (&["gallbladder"], sct("28231008", "Gallbladder")),
    (&["gall", "bladder"], sct("28231008", "Gallbladder")),
    (&["esophagus"], sct("32849002", "Esophagus")),
    (&["oesophagus"], sct("32849002", "Esophagus")),
    (&["stomach"], sct("69695003", "Stomach")),
    (&["aorta"], sct("15825003", "Aorta")),
    (
        &["inferior", "vena", "cava"],
        sct("64131007", "Inferior vena cava"),
    ),
    (&["ivc"], sct("64131007", "Inferior vena cava")),
    (&["postcava"], sct("64131007", "Inferior vena cava")),
    (&["adrenal"], sct("23451007", "Adrenal gland")),
    (&["duodenum"], sct("38848004", "Duodenum")),
    (&["bladder"], sct("89837001", "Bladder")),
    (&["prostate"], sct("41216001", "Prostate")),
    (&["uterus"], sct("35039007", "Uterus")),
    (&["left", "atrium"], sct("82471001", "Left atrium")),
    (&["heart"], sct("80891009", "Heart")),
    (&["hippocampus"], sct("5366008", "Hippocampus")),
    (&["colon"], sct("71854001", "Colon")),
    (&["lung"], sct("39607008", "Lung")),
    (&["brain"], sct("12738006", "Brain")),
    (&["hepatic", "vein"], sct("8993003", "Hepatic vein")),
    (&["portal", "vein"], sct("32764006", "Portal vein")),
    (&["vessel"], sct("59820001", "Blood Vessel")),
];

/// Abnormal structures by the words that name them.
const FINDINGS: &[(&[&str], Code)] = &[
    (&["tumor"], sct("108369006", "Neoplasm")),
    (&["tumour"], sct("108369006", "Neoplasm")),
    (&["cancer"], sct("108369006", "Neoplasm")),
    (&["neoplasm"], sct("108369006", "Neoplasm")),
    (&["mass"], sct("4147007", "Mass")),
    (&["cyst"], sct("367643001", "Cyst")),
    (&["lesion"], sct("52988006", "Lesion")),
    (&["edema"], sct("79654002", "Edema")),
    (&["oedema"], sct("79654002", "Edema")),
    (&["necrosis"], sct("6574001", "Necrosis")),
];

fn words(name: &str) -> Vec<String> {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect()
}

fn find(words: &[String], table: &[(&[&str], Code)]) -> Option<Code> {
    table
        .iter()
        .find(|(keys, _)| keys.iter().all(|k| words.iter().any(|w| w == k)))
        .map(|(_, c)| *c)
}

/// The codes for a label called `name`.
pub fn for_label(name: &str) -> SegmentCodes {
    let w = words(name);
    let organ = find(&w, ORGANS);
    if let Some(finding) = find(&w, FINDINGS) {
        return SegmentCodes {
            category: ABNORMAL_STRUCTURE,
            property: finding,
            modifier: None,
            region: organ,
        };
    }
    match organ {
        Some(organ) => {
            let side = |s: &str| w.iter().any(|x| x == s);
            // "left atrium" names a structure, not a side.
            let modifier = if organ.value == "82471001" {
                None
            } else if side("right") {
                Some(RIGHT)
            } else if side("left") {
                Some(LEFT)
            } else {
                None
            };
            SegmentCodes {
                category: ANATOMICAL_STRUCTURE,
                property: organ,
                modifier,
                region: None,
            }
        }
        None => SegmentCodes {
            category: TISSUE,
            property: TISSUE,
            modifier: None,
            region: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_papers_datasets_get_their_codes() {
        let k = for_label("Right kidney");
        assert_eq!((k.property.value, k.modifier), ("64033007", Some(RIGHT)));
        assert_eq!(for_label("kidney_left").modifier, Some(LEFT));
        assert_eq!(for_label("postcava").property.meaning, "Inferior vena cava");
        assert_eq!(for_label("Gall Bladder").property.value, "28231008");
        assert_eq!(for_label("bladder").property.value, "89837001");
        assert_eq!(for_label("left_atrium").modifier, None);
        let t = for_label("kidney tumor");
        assert_eq!(t.category, ABNORMAL_STRUCTURE);
        assert_eq!(t.property.meaning, "Neoplasm");
        assert_eq!(t.region.map(|r| r.meaning), Some("Kidney"));
        assert_eq!(for_label("cyst").region, None);
        let g = for_label("Anterior");
        assert_eq!((g.category, g.property), (TISSUE, TISSUE));
    }
}
