//! DICOM Segmentation objects (SEG, binary): a label map written against its source series, and
//! read back onto that series' grid.
//!
//! The writer follows the Segmentation IOD as highdicom writes it: one segment per foreground
//! label (SNOMED CT codes from [`super::codes`]), frames only where a segment is present, each
//! frame referencing its source image (SOP instance, and frame number for a multi-frame source)
//! with its plane position, a two-dimensional index (segment, position), patient/study/frame of
//! reference copied from the source, bits packed without padding between frames, Explicit VR
//! Little Endian.

use super::codes::{self, Code, SegmentCodes};
use super::{dot, floats, item, text, SourceSeries};
use crate::error::{Error, Result};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use std::collections::BTreeMap;
use std::path::Path;

/// Segmentation Storage.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// One segment: the label value it stands for, its name and codes.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub number: u16,
    pub label: String,
    pub codes: SegmentCodes,
}

impl Segment {
    /// A segment for label `number` called `label`, coded from its name.
    pub fn named(number: u16, label: &str) -> Segment {
        Segment {
            number,
            label: label.to_string(),
            codes: codes::for_label(label),
        }
    }
}

/// The software that made the segmentation (Segmentation Algorithm Identification).
#[derive(Clone, Debug)]
pub struct Algorithm {
    pub name: String,
    pub version: String,
}

/// A fresh UID under the UUID root 2.25 (PS3.5 B.2).
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// A decimal string within DICOM's 16 characters.
fn ds(v: f64) -> String {
    let s = format!("{v}");
    if s.len() <= 16 {
        return s;
    }
    let int_len = format!("{:.0}", v.trunc()).len() + usize::from(v < 0.0 && v.trunc() == 0.0);
    if int_len + 2 <= 16 {
        let s = format!("{v:.*}", 16 - int_len - 1);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return s.to_string();
    }
    format!("{v:.6e}")
}

fn strs(tag: Tag, vr: VR, values: &[String]) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::Strs(values.to_vec().into()))
}

fn s(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn obj(elements: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(elements)
}

fn code_item(c: &Code) -> InMemDicomObject {
    obj(vec![
        s(tags::CODE_VALUE, VR::SH, c.value),
        s(tags::CODING_SCHEME_DESIGNATOR, VR::SH, c.scheme),
        s(tags::CODE_MEANING, VR::LO, c.meaning),
    ])
}

fn segment_item(sg: &Segment, algo: &Algorithm) -> InMemDicomObject {
    let mut property = code_item(&sg.codes.property);
    if let Some(m) = &sg.codes.modifier {
        property.put(seq(
            tags::SEGMENTED_PROPERTY_TYPE_MODIFIER_CODE_SEQUENCE,
            vec![code_item(m)],
        ));
    }
    let mut item = obj(vec![
        DataElement::new(
            tags::SEGMENT_NUMBER,
            VR::US,
            PrimitiveValue::from(sg.number),
        ),
        s(tags::SEGMENT_LABEL, VR::LO, &sg.label),
        seq(
            tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
            vec![code_item(&sg.codes.category)],
        ),
        seq(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, vec![property]),
        s(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC"),
        s(tags::SEGMENT_ALGORITHM_NAME, VR::LO, &algo.name),
        seq(
            tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
            vec![obj(vec![
                seq(
                    tags::ALGORITHM_FAMILY_CODE_SEQUENCE,
                    vec![code_item(&Code {
                        value: "123109",
                        scheme: "DCM",
                        meaning: "Artificial Intelligence",
                    })],
                ),
                s(tags::ALGORITHM_NAME, VR::LO, &algo.name),
                s(tags::ALGORITHM_VERSION, VR::LO, &algo.version),
            ])],
        ),
    ]);
    if let Some(r) = &sg.codes.region {
        item.put(seq(tags::ANATOMIC_REGION_SEQUENCE, vec![code_item(r)]));
    }
    item
}

/// Attributes copied from the source (patient, study, frame of reference); type 2 ones are
/// written empty when the source lacks them.
const COPIED: &[(Tag, VR)] = &[
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_INSTANCE_UID, VR::UI),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
    (tags::FRAME_OF_REFERENCE_UID, VR::UI),
    (tags::POSITION_REFERENCE_INDICATOR, VR::LO),
];

/// Writes `labels` (one label per voxel of `source.geometry`, repux's x-fastest-last layout) as a
/// binary SEG at `path`, atomically. Every non-zero label must have a segment.
pub fn write_seg(
    path: &Path,
    source: &SourceSeries,
    labels: &[u16],
    segments: &[Segment],
    algo: &Algorithm,
) -> Result<()> {
    let (rows, cols, n) = (source.rows, source.cols, source.frames.len());
    if labels.len() != rows * cols * n {
        return Err(Error::invalid(
            path,
            format!(
                "{} labels for the source series' {cols}×{rows}×{n} voxels",
                labels.len()
            ),
        ));
    }
    if segments.is_empty() {
        return Err(Error::invalid(path, "no segments to write"));
    }
    for v in labels.iter().filter(|&&v| v != 0) {
        if !segments.iter().any(|s| s.number == *v) {
            return Err(Error::invalid(
                path,
                format!("label {v} has no segment description"),
            ));
        }
    }
    for src in &source.frames {
        if src.sop_instance_uid.is_empty() || src.sop_class_uid.is_empty() {
            return Err(Error::invalid(
                &src.file,
                "no SOPInstanceUID/SOPClassUID: a SEG cannot reference it",
            ));
        }
    }
    for (a, sa) in segments.iter().enumerate() {
        if sa.number == 0 || segments[..a].iter().any(|s| s.number == sa.number) {
            return Err(Error::invalid(
                path,
                format!("segment number {} is 0 or repeated", sa.number),
            ));
        }
    }
    let header = &source.header;
    let study = text(header, tags::STUDY_INSTANCE_UID).unwrap_or_default();
    if study.is_empty() || text(header, tags::FRAME_OF_REFERENCE_UID).is_none() {
        return Err(Error::invalid(
            &source.frames[0].file,
            "no StudyInstanceUID or FrameOfReferenceUID: a SEG needs both from its source",
        ));
    }

    // Frames: segment-major, then along the normal; a frame only where the segment is present.
    let present = |seg: u16, k: usize| {
        (0..cols).any(|x| (0..rows).any(|y| labels[(x * rows + y) * n + k] == seg))
    };
    let mut frames: Vec<(u16, usize)> = Vec::new();
    for sg in segments {
        frames.extend(
            (0..n)
                .filter(|&k| present(sg.number, k))
                .map(|k| (sg.number, k)),
        );
    }
    if frames.is_empty() {
        // An empty result is still a valid object: one empty frame of the first segment.
        frames.push((segments[0].number, 0));
    }
    let frame_px = rows * cols;
    let mut bits = vec![0u8; (frames.len() * frame_px).div_ceil(8).next_multiple_of(2)];
    for (f, &(seg, k)) in frames.iter().enumerate() {
        for y in 0..rows {
            for x in 0..cols {
                if labels[(x * rows + y) * n + k] == seg {
                    let b = f * frame_px + y * cols + x;
                    bits[b / 8] |= 1 << (b % 8);
                }
            }
        }
    }

    let dim_org = new_uid();
    let sop_instance = new_uid();
    let now = now_dicom();
    let mut ds_ = InMemDicomObject::new_empty();
    for &(tag, vr) in COPIED {
        // Type 2 in the SEG IOD: present, empty when the source lacks it. The two Type 1 UIDs
        // among them were checked above.
        let v = text(header, tag).unwrap_or_default();
        ds_.put(s(tag, vr, &v));
    }
    let per_frame: Vec<InMemDicomObject> = frames
        .iter()
        .map(|&(seg, k)| {
            let src = &source.frames[k];
            let mut source_item = obj(vec![
                s(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &src.sop_class_uid),
                s(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    &src.sop_instance_uid,
                ),
                // The SEG's frames are on the source's pixel grid.
                s(tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES"),
                seq(
                    tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                    vec![code_item(&Code {
                        value: "121322",
                        scheme: "DCM",
                        meaning: "Source image for image processing operation",
                    })],
                ),
            ]);
            if let Some(fr) = src.frame_number {
                source_item.put(DataElement::new(
                    tags::REFERENCED_FRAME_NUMBER,
                    VR::IS,
                    PrimitiveValue::from(fr.to_string()),
                ));
            }
            obj(vec![
                seq(
                    tags::DERIVATION_IMAGE_SEQUENCE,
                    vec![obj(vec![
                        seq(
                            tags::DERIVATION_CODE_SEQUENCE,
                            vec![code_item(&Code {
                                value: "113076",
                                scheme: "DCM",
                                meaning: "Segmentation",
                            })],
                        ),
                        seq(tags::SOURCE_IMAGE_SEQUENCE, vec![source_item]),
                    ])],
                ),
                seq(
                    tags::FRAME_CONTENT_SEQUENCE,
                    vec![obj(vec![DataElement::new(
                        tags::DIMENSION_INDEX_VALUES,
                        VR::UL,
                        PrimitiveValue::U32([seg as u32, k as u32 + 1].as_slice().into()),
                    )])],
                ),
                seq(
                    tags::PLANE_POSITION_SEQUENCE,
                    vec![obj(vec![strs(
                        tags::IMAGE_POSITION_PATIENT,
                        VR::DS,
                        &src.position.map(ds),
                    )])],
                ),
                seq(
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    vec![obj(vec![DataElement::new(
                        tags::REFERENCED_SEGMENT_NUMBER,
                        VR::US,
                        PrimitiveValue::from(seg),
                    )])],
                ),
            ])
        })
        .collect();
    let thickness = source.thickness.unwrap_or(source.step.abs());
    let shared = obj(vec![
        seq(
            tags::PLANE_ORIENTATION_SEQUENCE,
            vec![obj(vec![strs(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                &source.orientation.map(ds),
            )])],
        ),
        seq(
            tags::PIXEL_MEASURES_SEQUENCE,
            vec![obj(vec![
                strs(tags::PIXEL_SPACING, VR::DS, &source.pixel_spacing.map(ds)),
                s(tags::SLICE_THICKNESS, VR::DS, &ds(thickness)),
                s(tags::SPACING_BETWEEN_SLICES, VR::DS, &ds(source.step.abs())),
            ])],
        ),
    ]);
    let dimension = |pointer: Tag, group: Tag, label: &str| {
        obj(vec![
            s(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dim_org),
            DataElement::new(
                tags::DIMENSION_INDEX_POINTER,
                VR::AT,
                PrimitiveValue::from(pointer),
            ),
            DataElement::new(
                tags::FUNCTIONAL_GROUP_POINTER,
                VR::AT,
                PrimitiveValue::from(group),
            ),
            s(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
        ])
    };
    let mut referenced: Vec<&str> = Vec::new();
    let mut referenced_items = Vec::new();
    for f in &source.frames {
        if !referenced.contains(&f.sop_instance_uid.as_str()) {
            referenced.push(&f.sop_instance_uid);
            referenced_items.push(obj(vec![
                s(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &f.sop_class_uid),
                s(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    &f.sop_instance_uid,
                ),
            ]));
        }
    }
    let series_number = text(header, tags::SERIES_NUMBER)
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(1000, |v| v + 1000);
    for e in [
        s(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        s(tags::SOP_CLASS_UID, VR::UI, SEGMENTATION_STORAGE),
        s(tags::SOP_INSTANCE_UID, VR::UI, &sop_instance),
        s(tags::MODALITY, VR::CS, "SEG"),
        s(tags::SERIES_INSTANCE_UID, VR::UI, &new_uid()),
        s(tags::SERIES_NUMBER, VR::IS, &series_number.to_string()),
        s(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            &format!("{} segmentation", algo.name),
        ),
        s(tags::INSTANCE_NUMBER, VR::IS, "1"),
        s(tags::CONTENT_DATE, VR::DA, &now.0),
        s(tags::CONTENT_TIME, VR::TM, &now.1),
        s(tags::CONTENT_LABEL, VR::CS, "SEGMENTATION"),
        s(
            tags::CONTENT_DESCRIPTION,
            VR::LO,
            &format!("{} {}", algo.name, algo.version),
        ),
        s(tags::CONTENT_CREATOR_NAME, VR::PN, ""),
        s(tags::MANUFACTURER, VR::LO, &algo.name),
        s(tags::MANUFACTURER_MODEL_NAME, VR::LO, &algo.name),
        s(tags::DEVICE_SERIAL_NUMBER, VR::LO, "1"),
        s(tags::SOFTWARE_VERSIONS, VR::LO, &algo.version),
        strs(
            tags::IMAGE_TYPE,
            VR::CS,
            &["DERIVED".into(), "PRIMARY".into()],
        ),
        s(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"),
        s(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(rows as u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(cols as u16)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(1u16)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(1u16)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ),
        s(tags::NUMBER_OF_FRAMES, VR::IS, &frames.len().to_string()),
        seq(
            tags::SEGMENT_SEQUENCE,
            segments.iter().map(|sg| segment_item(sg, algo)).collect(),
        ),
        seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]),
        seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame),
        seq(
            tags::DIMENSION_ORGANIZATION_SEQUENCE,
            vec![obj(vec![s(
                tags::DIMENSION_ORGANIZATION_UID,
                VR::UI,
                &dim_org,
            )])],
        ),
        s(tags::DIMENSION_ORGANIZATION_TYPE, VR::CS, "3D"),
        seq(
            tags::DIMENSION_INDEX_SEQUENCE,
            vec![
                dimension(
                    tags::REFERENCED_SEGMENT_NUMBER,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    "Segment Number",
                ),
                dimension(
                    tags::IMAGE_POSITION_PATIENT,
                    tags::PLANE_POSITION_SEQUENCE,
                    "Image Position Patient",
                ),
            ],
        ),
        seq(
            tags::REFERENCED_SERIES_SEQUENCE,
            vec![obj(vec![
                s(tags::SERIES_INSTANCE_UID, VR::UI, &source.uid),
                seq(tags::REFERENCED_INSTANCE_SEQUENCE, referenced_items),
            ])],
        ),
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(bits)),
    ] {
        ds_.put(e);
    }
    let file = ds_
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .map_err(|e| Error::invalid(path, format!("file meta: {e}")))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes)
        .map_err(|e| Error::invalid(path, format!("encoding the SEG: {e}")))?;
    crate::fs::write_bytes_atomic(path, &bytes)
}

/// Today's date and the time (UTC) as DICOM DA and TM.
fn now_dicom() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let t = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", t / 3600, t / 60 % 60, t % 60),
    )
}

/// A SEG read back onto its source series' grid.
#[derive(Clone, Debug)]
pub struct SegLabels {
    /// Segment number per voxel of `source.geometry` (0 outside every segment).
    pub labels: Vec<u16>,
    /// Segment number → label.
    pub segments: BTreeMap<u16, String>,
}

/// Reads the SEG at `path` onto `source`'s grid. Frames are placed by the source image they
/// reference (SOP instance and frame number), else by their plane position; a FRACTIONAL SEG
/// counts a pixel as inside from half its maximum value. Overlapping segments are an error: a
/// label map holds one label per voxel.
pub fn read_seg(path: &Path, source: &SourceSeries) -> Result<SegLabels> {
    let obj = dicom_object::open_file(path)
        .map_err(|e| Error::invalid(path, format!("cannot be read as DICOM: {e}")))?;
    if text(&obj, tags::SOP_CLASS_UID).as_deref() != Some(SEGMENTATION_STORAGE) {
        return Err(Error::invalid(path, "not a DICOM Segmentation object"));
    }
    let (rows, cols, n) = (source.rows, source.cols, source.frames.len());
    let r = floats(&obj, tags::ROWS, 1, path, "Rows")?[0] as usize;
    let c = floats(&obj, tags::COLUMNS, 1, path, "Columns")?[0] as usize;
    if (r, c) != (rows, cols) {
        return Err(Error::invalid(
            path,
            format!("{r}×{c} pixel frames, but the source series has {rows}×{cols}"),
        ));
    }
    let fractional = match text(&obj, tags::SEGMENTATION_TYPE).as_deref() {
        Some("BINARY") => false,
        Some("FRACTIONAL") => true,
        other => {
            return Err(Error::invalid(
                path,
                format!("SegmentationType {other:?}: expected BINARY or FRACTIONAL"),
            ))
        }
    };
    let max_fraction = if fractional {
        floats(
            &obj,
            tags::MAXIMUM_FRACTIONAL_VALUE,
            1,
            path,
            "MaximumFractionalValue",
        )?[0]
    } else {
        1.0
    };
    // SegmentSequence and each segment's SegmentLabel are Type 1 (PS3.3 C.8.20.2): a SEG
    // without them names nothing, so it is refused rather than read with empty names.
    let items = obj
        .element_opt(tags::SEGMENT_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .filter(|items| !items.is_empty())
        .ok_or_else(|| Error::invalid(path, "SEG without a SegmentSequence (Type 1)"))?;
    let mut segments = BTreeMap::new();
    for it in items {
        let num = floats(it, tags::SEGMENT_NUMBER, 1, path, "SegmentNumber")?[0] as u16;
        let label = text(it, tags::SEGMENT_LABEL)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                Error::invalid(path, format!("segment {num} has no SegmentLabel (Type 1)"))
            })?;
        segments.insert(num, label);
    }
    let per_frame = obj
        .element_opt(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .ok_or_else(|| Error::invalid(path, "no PerFrameFunctionalGroupsSequence"))?;
    let pixels = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or_else(|| Error::invalid(path, "no pixel data"))?
        .to_bytes()
        .map_err(|e| {
            Error::invalid(
                path,
                format!("pixel data: {e} (encapsulated SEG pixel data is not supported)"),
            )
        })?;
    let frame_px = rows * cols;
    let need = if fractional {
        per_frame.len() * frame_px
    } else {
        (per_frame.len() * frame_px).div_ceil(8)
    };
    if pixels.len() < need {
        return Err(Error::invalid(
            path,
            format!(
                "{} bytes of pixel data for {} frames of {rows}×{cols}",
                pixels.len(),
                per_frame.len()
            ),
        ));
    }
    let row_dir = [
        source.orientation[0],
        source.orientation[1],
        source.orientation[2],
    ];
    let col_dir = [
        source.orientation[3],
        source.orientation[4],
        source.orientation[5],
    ];
    let normal = super::cross(row_dir, col_dir);
    let origin = source.frames[0].position;
    let mut labels = vec![0u16; rows * cols * n];
    for (f, fg) in per_frame.iter().enumerate() {
        let frame_err = |m: String| Error::invalid(path, format!("frame {}: {m}", f + 1));
        let seg = item(fg, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
            .and_then(|s| text(s, tags::REFERENCED_SEGMENT_NUMBER))
            .and_then(|v| v.parse::<u16>().ok())
            .ok_or_else(|| frame_err("no ReferencedSegmentNumber".into()))?;
        let by_ref = item(fg, tags::DERIVATION_IMAGE_SEQUENCE)
            .and_then(|d| item(d, tags::SOURCE_IMAGE_SEQUENCE))
            .and_then(|src| {
                let uid = text(src, tags::REFERENCED_SOP_INSTANCE_UID)?;
                let fr: Option<usize> =
                    text(src, tags::REFERENCED_FRAME_NUMBER).and_then(|v| v.parse().ok());
                source.frames.iter().position(|s| {
                    s.sop_instance_uid == uid && (fr.is_none() || s.frame_number == fr)
                })
            });
        let k = match by_ref {
            Some(k) => k,
            None => {
                let pos = item(fg, tags::PLANE_POSITION_SEQUENCE).ok_or_else(|| {
                    frame_err(
                        "references no source image of the series and has no PlanePositionSequence"
                            .into(),
                    )
                })?;
                let p = floats(
                    pos,
                    tags::IMAGE_POSITION_PATIENT,
                    3,
                    path,
                    "ImagePositionPatient",
                )?;
                let d = dot(
                    [p[0] - origin[0], p[1] - origin[1], p[2] - origin[2]],
                    normal,
                );
                let kf = d / source.step;
                let k = kf.round();
                if (kf - k).abs() > 0.01 || k < 0.0 || k as usize >= n {
                    return Err(frame_err(format!(
                        "position {p:?} is not on a slice of the source series"
                    )));
                }
                k as usize
            }
        };
        for y in 0..rows {
            for x in 0..cols {
                let b = f * frame_px + y * cols + x;
                let inside = if fractional {
                    f64::from(pixels[b]) >= max_fraction / 2.0
                } else {
                    pixels[b / 8] >> (b % 8) & 1 == 1
                };
                if inside {
                    let v = &mut labels[(x * rows + y) * n + k];
                    if *v != 0 && *v != seg {
                        return Err(frame_err(format!("segments {} and {seg} overlap at column {x}, row {y} of slice {k}: a label map holds one label per voxel", *v)));
                    }
                    *v = seg;
                }
            }
        }
    }
    Ok(SegLabels { labels, segments })
}
