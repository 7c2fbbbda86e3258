//! NRRD reading (`.nrrd` attached, `.nhdr` detached; raw, gzip and text encodings), because real
//! labelled CT in public packages ships as NRRD. No maintained crate reads NRRD with geometry, so
//! the header (plain text) is parsed here.
//!
//! Geometry: `space directions` are the affine's columns and `space origin` its translation, in
//! the named space; LPS/LAS spaces are converted to RAS+ by negating the world rows that differ.
//! A non-spatial axis (`none` in space directions, kinds such as `vector` or `list`) becomes the
//! channel axis, wherever it stands.

use crate::error::{Error, ErrorKind, Result};
use crate::geometry::{column_norms, Affine, Geometry};
use crate::nifti::{decode_fortran, gunzip, DataType, Loaded};
use crate::volume::Volume;
use std::collections::HashMap;
use std::path::Path;

/// The header fields repux needs, parsed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct NrrdHeader {
    pub datatype: DataType,
    pub sizes: Vec<usize>,
    pub encoding: Encoding,
    pub little_endian: bool,
    /// Per axis: its direction vector in RAS+, or `None` for a non-spatial axis.
    pub directions: Vec<Option<[f64; 3]>>,
    pub origin: [f64; 3],
    pub data_file: Option<String>,
    pub line_skip: usize,
    pub byte_skip: i64,
    /// Byte offset of the attached data (just past the blank line that ends the header).
    pub data_offset: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    Gzip,
    Text,
}

fn dtype(s: &str) -> Result<DataType, String> {
    Ok(match s {
        "signed char" | "int8" | "int8_t" => DataType::I8,
        "uchar" | "unsigned char" | "uint8" | "uint8_t" => DataType::U8,
        "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => {
            DataType::I16
        }
        "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => DataType::U16,
        "int" | "signed int" | "int32" | "int32_t" => DataType::I32,
        "uint" | "unsigned int" | "uint32" | "uint32_t" => DataType::U32,
        "longlong"
        | "long long"
        | "long long int"
        | "signed long long"
        | "signed long long int"
        | "int64"
        | "int64_t" => DataType::I64,
        "ulonglong" | "unsigned long long" | "unsigned long long int" | "uint64" | "uint64_t" => {
            DataType::U64
        }
        "float" => DataType::F32,
        "double" => DataType::F64,
        other => return Err(format!("unsupported type {other:?}")),
    })
}

fn vector(s: &str) -> Result<Option<[f64; 3]>, String> {
    let t = s.trim();
    if t == "none" {
        return Ok(None);
    }
    let inner = t
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("expected a vector like (1,0,0), got {t:?}"))?;
    let v: Vec<f64> = inner
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad number in vector {t:?}"))?;
    if v.len() != 3 {
        return Err(format!(
            "vector {t:?} has {} components; repux reads 3-D spaces",
            v.len()
        ));
    }
    Ok(Some([v[0], v[1], v[2]]))
}

/// Splits `space directions` into per-axis tokens: vectors `( … )` or `none`.
fn split_vectors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for ch in s.chars() {
        match ch {
            '(' => {
                depth += 1;
                cur.push(ch);
            }
            ')' => {
                depth -= 1;
                cur.push(ch);
                if depth == 0 {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c if c.is_whitespace() && depth == 0 => {
                if !cur.trim().is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
            }
            c => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Parses an NRRD header from the start of a file's bytes (fuzzed: never panics).
pub fn parse_header(b: &[u8]) -> Result<NrrdHeader, String> {
    if !b.starts_with(b"NRRD000") {
        return Err("missing NRRD magic (file must start with NRRD000x)".into());
    }
    // The header ends at the first empty line (or at end of file for a detached .nhdr).
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut pos = 0;
    let mut data_offset = b.len();
    let mut first = true;
    while pos < b.len() {
        let end = b[pos..]
            .iter()
            .position(|&c| c == b'\n')
            .map(|e| pos + e)
            .unwrap_or(b.len());
        let line = String::from_utf8_lossy(&b[pos..end])
            .trim_end_matches('\r')
            .to_string();
        pos = (end + 1).min(b.len());
        if first {
            first = false;
            continue;
        }
        if line.is_empty() {
            data_offset = pos;
            break;
        }
        if line.starts_with('#') || line.contains(":=") {
            continue;
        }
        if let Some((k, v)) = line.split_once(": ") {
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        } else {
            return Err(format!(
                "header line {line:?} is not a \"field: value\" pair"
            ));
        }
    }
    let get = |k: &str| fields.get(k).map(|s| s.as_str());
    let req = |k: &str| get(k).ok_or_else(|| format!("required field {k:?} is missing"));
    let datatype = dtype(req("type")?)?;
    let dimension: usize = req("dimension")?
        .parse()
        .map_err(|_| "dimension is not a whole number".to_string())?;
    if !(1..=4).contains(&dimension) {
        return Err(format!("dimension = {dimension}: repux reads 1 to 4 axes"));
    }
    let sizes: Vec<usize> = req("sizes")?
        .split_whitespace()
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .filter(|&v| v >= 1)
                .map(|v| v as usize)
        })
        .collect::<Option<_>>()
        .ok_or("sizes must be positive whole numbers")?;
    if sizes.len() != dimension {
        return Err(format!(
            "sizes lists {} axes but dimension is {dimension}",
            sizes.len()
        ));
    }
    sizes
        .iter()
        .try_fold(1u64, |n, &s| {
            n.checked_mul(s as u64).filter(|&n| n <= 1 << 40)
        })
        .ok_or("sizes multiply to more than 2^40 voxels")?;
    let encoding = match req("encoding")? {
        "raw" => Encoding::Raw,
        "gzip" | "gz" => Encoding::Gzip,
        "text" | "txt" | "ascii" => Encoding::Text,
        other => {
            return Err(format!(
                "unsupported encoding {other:?} (repux reads raw, gzip and text)"
            ))
        }
    };
    let little_endian = match get("endian") {
        None | Some("little") => true,
        Some("big") => false,
        Some(o) => return Err(format!("endian {o:?} is neither little nor big")),
    };
    // Which world rows to negate to reach RAS+.
    let flip = match get("space").map(|s| s.to_ascii_lowercase()) {
        None => [1.0, 1.0, 1.0],
        Some(s) => match s.as_str() {
            "right-anterior-superior" | "ras" | "scanner-xyz" | "3d-right-handed" => {
                [1.0, 1.0, 1.0]
            }
            "left-posterior-superior" | "lps" => [-1.0, -1.0, 1.0],
            "left-anterior-superior" | "las" => [-1.0, 1.0, 1.0],
            other => {
                return Err(format!(
                    "unsupported space {other:?} (repux reads RAS, LPS and LAS)"
                ))
            }
        },
    };
    let directions: Vec<Option<[f64; 3]>> = match get("space directions") {
        Some(sd) => {
            let toks = split_vectors(sd);
            if toks.len() != dimension {
                return Err(format!(
                    "space directions lists {} axes but dimension is {dimension}",
                    toks.len()
                ));
            }
            toks.iter()
                .map(|t| {
                    vector(t).map(|v| v.map(|v| [v[0] * flip[0], v[1] * flip[1], v[2] * flip[2]]))
                })
                .collect::<Result<_, _>>()?
        }
        None => {
            // Axis-aligned: `spacings` (NaN for non-spatial axes) or unit spacing.
            let sp: Vec<f64> = match get("spacings") {
                Some(s) => s
                    .split_whitespace()
                    .map(|t| {
                        if t == "nan" || t == "NaN" {
                            Ok(f64::NAN)
                        } else {
                            t.parse::<f64>()
                        }
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|_| "bad number in spacings".to_string())?,
                None => vec![1.0; dimension],
            };
            if sp.len() != dimension {
                return Err(format!(
                    "spacings lists {} axes but dimension is {dimension}",
                    sp.len()
                ));
            }
            let mut spatial = 0;
            sp.iter()
                .map(|&s| {
                    if s.is_nan() || spatial >= 3 {
                        None
                    } else {
                        let mut v = [0.0; 3];
                        v[spatial] = s;
                        spatial += 1;
                        Some(v)
                    }
                })
                .collect()
        }
    };
    let n_spatial = directions.iter().filter(|d| d.is_some()).count();
    if n_spatial > 3 || dimension - n_spatial > 1 {
        return Err(format!("{n_spatial} spatial and {} non-spatial axes: repux reads up to 3 spatial axes and one channel axis", dimension - n_spatial));
    }
    let origin = match get("space origin") {
        Some(o) => vector(o)?
            .map(|v| [v[0] * flip[0], v[1] * flip[1], v[2] * flip[2]])
            .ok_or("space origin is none")?,
        None => [0.0; 3],
    };
    let data_file = get("data file").or(get("datafile")).map(|s| s.to_string());
    let line_skip = get("line skip")
        .or(get("lineskip"))
        .map(|s| s.parse::<usize>())
        .transpose()
        .map_err(|_| "line skip is not a whole number".to_string())?
        .unwrap_or(0);
    let byte_skip = get("byte skip")
        .or(get("byteskip"))
        .map(|s| s.parse::<i64>())
        .transpose()
        .map_err(|_| "byte skip is not a whole number".to_string())?
        .unwrap_or(0);
    if byte_skip < -1 {
        return Err(format!(
            "byte skip = {byte_skip} (only -1 or a byte count is valid)"
        ));
    }
    Ok(NrrdHeader {
        datatype,
        sizes,
        encoding,
        little_endian,
        directions,
        origin,
        data_file,
        line_skip,
        byte_skip,
        data_offset,
    })
}

/// Reads an `.nrrd` (attached data) or `.nhdr` (detached data) file.
pub fn read_nrrd(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let h = parse_header(&bytes).map_err(|m| Error::header(path, m))?;
    let (data_path, payload): (std::path::PathBuf, Vec<u8>) = match &h.data_file {
        None => (path.to_path_buf(), bytes[h.data_offset..].to_vec()),
        Some(f) if f.starts_with("LIST") || f.contains('%') => {
            return Err(Error::header(
                path,
                format!("data file {f:?}: multi-file NRRD is not supported"),
            ));
        }
        Some(f) => {
            let p = path.parent().unwrap_or(Path::new(".")).join(f);
            let b = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            (p, b)
        }
    };
    // Line skip applies to the stored file, before any decompression.
    let mut start = 0;
    for _ in 0..h.line_skip {
        match payload[start..].iter().position(|&c| c == b'\n') {
            Some(e) => start += e + 1,
            None => {
                return Err(Error::header(
                    &data_path,
                    format!("line skip {} passes the end of the data", h.line_skip),
                ))
            }
        }
    }
    let mut data = match h.encoding {
        Encoding::Gzip => gunzip(&data_path, &payload[start..])?,
        _ => payload[start..].to_vec(),
    };
    let n: usize = h.sizes.iter().product();
    let dt = h.datatype;
    if h.encoding == Encoding::Text {
        // Parse whitespace-separated numbers into native little-endian f64 and decode as F64.
        let text = String::from_utf8_lossy(&data);
        let vals: Vec<f64> = text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .take(n)
            .map(|t| t.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                Error::invalid(&data_path, "text data holds a value that is not a number")
            })?;
        if vals.len() < n {
            return Err(Error::new(
                &data_path,
                ErrorKind::Truncated {
                    offset: 0,
                    expected: n as u64,
                    available: vals.len() as u64,
                },
            ));
        }
        data = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        return finish(&h, &data, DataType::F64, true, dt);
    }
    let need = n * dt.size();
    let skip = if h.byte_skip == -1 {
        data.len().saturating_sub(need)
    } else {
        h.byte_skip as usize
    };
    if data.len() < skip + need {
        return Err(Error::new(
            &data_path,
            ErrorKind::Truncated {
                offset: skip as u64,
                expected: need as u64,
                available: data.len() as u64,
            },
        ));
    }
    let le = h.little_endian || dt.size() == 1;
    finish(&h, &data[skip..skip + need], dt, le, dt)
}

fn finish(h: &NrrdHeader, raw: &[u8], dt: DataType, le: bool, disk: DataType) -> Result<Loaded> {
    // Bring a channel axis, wherever it is, to the end (slowest), as NIfTI's 4th dim.
    let ch_axis = h.directions.iter().position(|d| d.is_none());
    let spatial_axes: Vec<usize> = (0..h.sizes.len()).filter(|&a| Some(a) != ch_axis).collect();
    let mut spatial = [1usize; 3];
    let mut affine: Affine = [[0.0; 4]; 4];
    for (k, &a) in spatial_axes.iter().enumerate() {
        spatial[k] = h.sizes[a];
        let d = h.directions[a].unwrap_or([0.0; 3]);
        for (row, v) in affine.iter_mut().zip(d) {
            row[k] = v;
        }
    }
    // Missing spatial axes (2-D images) get a unit column along the unused world axis.
    for (k, row) in affine
        .iter_mut()
        .enumerate()
        .take(3)
        .skip(spatial_axes.len())
    {
        row[k] = 1.0;
    }
    for (row, o) in affine.iter_mut().zip(h.origin) {
        row[3] = o;
    }
    affine[3][3] = 1.0;
    let channels = ch_axis.map(|a| h.sizes[a]).unwrap_or(1);
    let sz = dt.size();
    let reordered;
    let raw = match ch_axis {
        Some(a) if a + 1 != h.sizes.len() => {
            // Move the channel axis to last: element (…, c, …) with strides of the stored order.
            let inner: usize = h.sizes[..a].iter().product();
            let outer: usize = h.sizes[a + 1..].iter().product();
            let mut out = vec![0u8; raw.len()];
            for o in 0..outer {
                for c in 0..channels {
                    for i in 0..inner {
                        let src = ((o * channels + c) * inner + i) * sz;
                        let dst = ((c * outer + o) * inner + i) * sz;
                        out[dst..dst + sz].copy_from_slice(&raw[src..src + sz]);
                    }
                }
            }
            reordered = out;
            &reordered[..]
        }
        _ => raw,
    };
    let geometry = Geometry {
        shape: spatial,
        spacing: column_norms(&affine),
        affine,
    };
    let (data, stats) = decode_fortran(raw, dt, le, spatial, channels, 1.0, 0.0);
    let mut shape: Vec<usize> = spatial[..spatial_axes.len()].to_vec();
    if ch_axis.is_some() {
        shape.push(channels);
    }
    Ok(Loaded {
        volume: Volume::new(geometry, channels, data),
        datatype: disk,
        shape,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_lps_to_ras() {
        let h = parse_header(b"NRRD0004\n# comment\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 2 3 4\nspace directions: (0.5,0,0) (0,0.5,0) (0,0,2)\nkinds: domain domain domain\nendian: little\nencoding: raw\nspace origin: (10,20,30)\n\nDATA").unwrap();
        assert_eq!(h.datatype, DataType::I16);
        assert_eq!(h.sizes, vec![2, 3, 4]);
        assert_eq!(h.directions[0], Some([-0.5, -0.0, 0.0]));
        assert_eq!(h.origin, [-10.0, -20.0, 30.0]);
        assert_eq!(h.data_offset, h.data_offset.min(1000));
    }

    #[test]
    fn header_errors() {
        assert!(parse_header(b"P5\n").unwrap_err().contains("magic"));
        assert!(parse_header(b"NRRD0004\ntype: short\n\n")
            .unwrap_err()
            .contains("dimension"));
        assert!(parse_header(
            b"NRRD0004\ntype: complex\ndimension: 1\nsizes: 2\nencoding: raw\n\n"
        )
        .unwrap_err()
        .contains("unsupported type"));
        assert!(
            parse_header(b"NRRD0004\ntype: short\ndimension: 2\nsizes: 2\nencoding: raw\n\n")
                .unwrap_err()
                .contains("sizes lists 1")
        );
        assert!(
            parse_header(b"NRRD0004\ntype: short\ndimension: 1\nsizes: -2\nencoding: raw\n\n")
                .unwrap_err()
                .contains("positive")
        );
        assert!(parse_header(
            b"NRRD0004\ntype: short\ndimension: 1\nsizes: 2\nencoding: bzip2\n\n"
        )
        .unwrap_err()
        .contains("encoding"));
    }
}
