//! MetaImage (ITK's `.mha`, and `.mhd` with its `.raw`/`.zraw` data file): reading and writing
//! with exact geometry, as ITK and SimpleITK mean it.
//!
//! Geometry: MetaImage lives in ITK's LPS world. The point of voxel index `i` is
//! `Offset + D · diag(ElementSpacing) · i`, where `TransformMatrix` (or its synonyms `Rotation`,
//! `Orientation`) lists the direction of axis 0, then axis 1, then axis 2 — the columns of `D`,
//! as SimpleITK writes them. repux's affine is RAS, so x and y change sign. `Offset` may be
//! spelled `Position` or `Origin`. `AnatomicalOrientation` is derived from the direction by ITK
//! and ignored on reading (as ITK ignores it); repux writes the value ITK would.
//!
//! Data: x fastest, vector components (`ElementNumberOfChannels`) interleaved fastest of all;
//! `CompressedData = True` is a zlib stream; `HeaderSize` skips bytes of a detached file (−1: the
//! data are the file's last bytes). Not supported, with an error that says so: `ElementDataFile
//! = LIST` and file patterns (one file per slice), more than 3 spatial dimensions, and element
//! types other than integers and floats.

use crate::error::{Error, ErrorKind, Result};
use crate::geometry::{Affine, Geometry};
use crate::nifti::{decode_fortran, encode, DataType, Loaded};
use crate::volume::Volume;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The header fields repux uses, parsed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaHeader {
    pub dims: Vec<usize>,
    pub spacing: Vec<f64>,
    pub offset: Vec<f64>,
    /// Direction of each axis (LPS), axis-major: `direction[k]` is axis k's unit vector.
    pub direction: Vec<Vec<f64>>,
    pub channels: usize,
    pub datatype: DataType,
    pub big_endian: bool,
    pub compressed: bool,
    pub header_size: i64,
    /// `None`: `LOCAL` (the data follow the header in the same file).
    pub data_file: Option<String>,
    /// Byte offset of the data in the header file when `LOCAL`.
    pub data_offset: usize,
}

fn met_type(s: &str) -> Result<DataType, String> {
    Ok(match s {
        "MET_UCHAR" => DataType::U8,
        "MET_CHAR" => DataType::I8,
        "MET_SHORT" => DataType::I16,
        "MET_USHORT" => DataType::U16,
        "MET_INT" | "MET_LONG" => DataType::I32,
        "MET_UINT" | "MET_ULONG" => DataType::U32,
        "MET_LONG_LONG" => DataType::I64,
        "MET_ULONG_LONG" => DataType::U64,
        "MET_FLOAT" => DataType::F32,
        "MET_DOUBLE" => DataType::F64,
        other => {
            return Err(format!(
                "ElementType {other} is not supported (MET_UCHAR, MET_CHAR, MET_SHORT, MET_USHORT, \
                 MET_INT, MET_UINT, MET_LONG_LONG, MET_ULONG_LONG, MET_FLOAT, MET_DOUBLE)"
            ))
        }
    })
}

fn met_name(dt: DataType) -> &'static str {
    match dt {
        DataType::U8 => "MET_UCHAR",
        DataType::I8 => "MET_CHAR",
        DataType::I16 => "MET_SHORT",
        DataType::U16 => "MET_USHORT",
        DataType::I32 => "MET_INT",
        DataType::U32 => "MET_UINT",
        DataType::I64 => "MET_LONG_LONG",
        DataType::U64 => "MET_ULONG_LONG",
        DataType::F32 => "MET_FLOAT",
        DataType::F64 => "MET_DOUBLE",
    }
}

fn numbers(key: &str, v: &str) -> Result<Vec<f64>, String> {
    v.split_whitespace()
        .map(|t| {
            t.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{key} = {v}: {t:?} is not a finite number"))
        })
        .collect()
}

fn boolean(key: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{key} = {v}: expected True or False")),
    }
}

/// Parses the text header (never panics); the data start after the `ElementDataFile` line.
pub fn parse_header(b: &[u8]) -> Result<MetaHeader, String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    let mut data_offset = None;
    while pos < b.len() {
        let end = b[pos..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |e| pos + e);
        let line = std::str::from_utf8(&b[pos..end])
            .map_err(|_| "header is not text (not a MetaImage file?)".to_string())?
            .trim();
        pos = end + 1;
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("header line {line:?} is not `Key = Value`"))?;
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        let last = k.eq_ignore_ascii_case("ElementDataFile");
        fields.push((k, v));
        if last {
            data_offset = Some(pos.min(b.len()));
            break;
        }
        if fields.len() > 200 {
            return Err("header has no ElementDataFile line in its first 200 lines".into());
        }
    }
    let data_offset = data_offset.ok_or("header has no ElementDataFile line")?;
    let get = |names: &[&str]| {
        fields
            .iter()
            .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    };
    if let Some((_, t)) = get(&["ObjectType"]) {
        if !t.eq_ignore_ascii_case("Image") {
            return Err(format!("ObjectType = {t}: only Image is supported"));
        }
    }
    let (_, nd) = get(&["NDims"]).ok_or("header lacks NDims")?;
    let nd: usize = nd
        .parse()
        .ok()
        .filter(|n| (1..=3).contains(n))
        .ok_or_else(|| format!("NDims = {nd}: repux reads 1 to 3 spatial dimensions"))?;
    let (k, dims) = get(&["DimSize"]).ok_or("header lacks DimSize")?;
    let dims = numbers(k, dims)?;
    if dims.len() != nd || dims.iter().any(|&d| d < 1.0 || d.fract() != 0.0) {
        return Err(format!(
            "DimSize {dims:?}: expected {nd} positive whole numbers"
        ));
    }
    let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let spacing = match get(&["ElementSpacing"]).or_else(|| get(&["ElementSize"])) {
        Some((k, v)) => numbers(k, v)?,
        None => vec![1.0; nd],
    };
    if spacing.len() != nd || spacing.iter().any(|&s| s <= 0.0) {
        return Err(format!(
            "ElementSpacing {spacing:?}: expected {nd} positive numbers"
        ));
    }
    let offset = match get(&["Offset", "Position", "Origin"]) {
        Some((k, v)) => numbers(k, v)?,
        None => vec![0.0; nd],
    };
    if offset.len() != nd {
        return Err(format!("Offset {offset:?}: expected {nd} numbers"));
    }
    let direction = match get(&["TransformMatrix", "Rotation", "Orientation"]) {
        Some((k, v)) => {
            let m = numbers(k, v)?;
            if m.len() != nd * nd {
                return Err(format!("{k} has {} numbers, expected {}", m.len(), nd * nd));
            }
            let axes: Vec<Vec<f64>> = m.chunks(nd).map(|c| c.to_vec()).collect();
            for (a, d) in axes.iter().enumerate() {
                let n = d.iter().map(|x| x * x).sum::<f64>().sqrt();
                if (n - 1.0).abs() > 1e-3 {
                    return Err(format!(
                        "{k}: the direction of axis {a} has length {n}, not 1"
                    ));
                }
            }
            axes
        }
        None => (0..nd)
            .map(|a| (0..nd).map(|b| if a == b { 1.0 } else { 0.0 }).collect())
            .collect(),
    };
    let channels =
        match get(&["ElementNumberOfChannels"]) {
            Some((_, v)) => v.parse::<usize>().ok().filter(|&c| c >= 1).ok_or_else(|| {
                format!("ElementNumberOfChannels = {v}: expected a positive integer")
            })?,
            None => 1,
        };
    let (_, et) = get(&["ElementType"]).ok_or("header lacks ElementType")?;
    let datatype = met_type(et)?;
    let big_endian = match get(&["BinaryDataByteOrderMSB", "ElementByteOrderMSB"]) {
        Some((k, v)) => boolean(k, v)?,
        None => false,
    };
    if let Some((k, v)) = get(&["BinaryData"]) {
        if !boolean(k, v)? {
            return Err("BinaryData = False (ASCII voxel data) is not supported".into());
        }
    }
    let compressed = match get(&["CompressedData"]) {
        Some((k, v)) => boolean(k, v)?,
        None => false,
    };
    let header_size = match get(&["HeaderSize"]) {
        Some((_, v)) => v
            .parse::<i64>()
            .ok()
            .filter(|&h| h >= -1)
            .ok_or_else(|| format!("HeaderSize = {v}: expected −1 or a byte count"))?,
        None => 0,
    };
    let (_, file) = get(&["ElementDataFile"]).ok_or("header lacks ElementDataFile")?;
    let data_file = if file.eq_ignore_ascii_case("LOCAL") {
        None
    } else if file.to_ascii_uppercase().starts_with("LIST") || file.contains('%') {
        return Err(format!(
            "ElementDataFile = {file}: one file per slice (LIST or a pattern) is not supported; \
             convert to a single .mha first (e.g. SimpleITK ReadImage/WriteImage)"
        ));
    } else {
        Some(file.to_string())
    };
    Ok(MetaHeader {
        dims,
        spacing,
        offset,
        direction,
        channels,
        datatype,
        big_endian,
        compressed,
        header_size,
        data_file,
        data_offset,
    })
}

impl MetaHeader {
    /// The RAS affine (ITK's LPS with x and y negated); 1- and 2-D images get unit axes.
    pub fn affine(&self) -> Affine {
        let nd = self.dims.len();
        let mut a: Affine = [[0.0; 4]; 4];
        for k in 0..3 {
            for (r, row) in a.iter_mut().take(3).enumerate() {
                row[k] = if k < nd {
                    self.direction[k].get(r).copied().unwrap_or(0.0) * self.spacing[k]
                } else if r == k {
                    1.0
                } else {
                    0.0
                };
            }
        }
        for (r, row) in a.iter_mut().take(3).enumerate() {
            row[3] = self.offset.get(r).copied().unwrap_or(0.0);
        }
        a[3][3] = 1.0;
        for row in a.iter_mut().take(2) {
            row.iter_mut().for_each(|v| *v = -*v);
        }
        a
    }
}

/// Reads a `.mha` or `.mhd` (with its data file).
pub fn read_metaimage(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::invalid(path, "file is empty (0 bytes)"));
    }
    let h = parse_header(&bytes).map_err(|m| Error::header(path, m))?;
    let (data_path, payload) = match &h.data_file {
        None => (path.to_path_buf(), bytes[h.data_offset..].to_vec()),
        Some(f) => {
            let p: PathBuf = path.parent().unwrap_or(Path::new(".")).join(f);
            let b = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            (p, b)
        }
    };
    let spatial: usize = h.dims.iter().product();
    let need = spatial * h.channels * h.datatype.size();
    let data = if h.compressed {
        let mut out = Vec::with_capacity(need);
        flate2::read::ZlibDecoder::new(&payload[..])
            .take(need as u64)
            .read_to_end(&mut out)
            .map_err(|e| Error::new(&data_path, ErrorKind::Gzip(e)))?;
        out
    } else {
        let skip = match h.header_size {
            -1 => payload.len().saturating_sub(need),
            s if h.data_file.is_some() => s as usize,
            _ => 0,
        };
        payload.get(skip..).unwrap_or(&[]).to_vec()
    };
    if data.len() < need {
        return Err(Error::new(
            &data_path,
            ErrorKind::Truncated {
                offset: 0,
                expected: need as u64,
                available: data.len() as u64,
            },
        ));
    }
    let sz = h.datatype.size();
    // Interleaved components → one block per channel, each x-fastest like NIfTI's 4th dimension.
    let raw = if h.channels > 1 {
        let mut planar = vec![0u8; need];
        for v in 0..spatial {
            for c in 0..h.channels {
                let src = (v * h.channels + c) * sz;
                let dst = (c * spatial + v) * sz;
                planar[dst..dst + sz].copy_from_slice(&data[src..src + sz]);
            }
        }
        planar
    } else {
        data[..need].to_vec()
    };
    let mut shape3 = [1usize; 3];
    shape3[..h.dims.len()].copy_from_slice(&h.dims);
    let mut spacing3 = [1.0; 3];
    spacing3[..h.dims.len()].copy_from_slice(&h.spacing);
    let le = !h.big_endian || sz == 1;
    let (values, stats) = decode_fortran(&raw, h.datatype, le, shape3, h.channels, 1.0, 0.0);
    let geometry = Geometry {
        shape: shape3,
        spacing: spacing3,
        affine: h.affine(),
    };
    let mut shape = h.dims.clone();
    if h.channels > 1 {
        shape.push(h.channels);
    }
    Ok(Loaded {
        volume: Volume::new(geometry, h.channels, values),
        datatype: h.datatype,
        shape,
        stats,
    })
}

/// ITK's `AnatomicalOrientation` for LPS axis directions: per axis, the side it runs *from*.
fn anatomical_orientation(dirs: &[[f64; 3]; 3]) -> String {
    dirs.iter()
        .map(|d| {
            let a = (0..3)
                .max_by(|&i, &j| d[i].abs().total_cmp(&d[j].abs()))
                .unwrap_or(0);
            let pos = d[a] > 0.0;
            match (a, pos) {
                (0, true) => 'R',
                (0, false) => 'L',
                (1, true) => 'A',
                (1, false) => 'P',
                (2, true) => 'I',
                _ => 'S',
            }
        })
        .collect()
}

/// Writes `.mha` (one file, zlib-compressed data) or `.mhd` + `.raw` (uncompressed), atomically.
/// `data` is C × D × H × W as everywhere in repux; integer types round and must fit.
pub fn write_metaimage(
    path: &Path,
    g: &Geometry,
    channels: usize,
    data: &[f32],
    dt: DataType,
) -> Result<()> {
    let n = g.voxels();
    if data.len() != channels * n || channels == 0 {
        return Err(Error::invalid(
            path,
            format!(
                "{} values for {channels} channels of {:?}",
                data.len(),
                g.shape
            ),
        ));
    }
    let name = path.to_string_lossy().to_ascii_lowercase();
    let single = name.ends_with(".mha");
    if !single && !name.ends_with(".mhd") {
        return Err(Error::invalid(path, "output name must end in .mha or .mhd"));
    }
    // RAS affine → LPS offset and unit axis directions.
    let a = &g.affine;
    let lps = |v: [f64; 3]| [-v[0], -v[1], v[2]];
    let mut dirs = [[0.0; 3]; 3];
    for (k, d) in dirs.iter_mut().enumerate() {
        let s = g.spacing[k].max(1e-12);
        *d = lps([a[0][k] / s, a[1][k] / s, a[2][k] / s]);
    }
    let offset = lps([a[0][3], a[1][3], a[2][3]]);
    let join = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let [d0, d1, d2] = g.shape;
    // Voxels x fastest, components interleaved: (x, y, z, c) ← data[c][x][y][z] (C order).
    let mut bytes = Vec::with_capacity(data.len() * dt.size());
    for z in 0..d2 {
        for y in 0..d1 {
            for x in 0..d0 {
                let v = (x * d1 + y) * d2 + z;
                for c in 0..channels {
                    encode(data[c * n + v], dt, &mut bytes).map_err(|m| Error::invalid(path, m))?;
                }
            }
        }
    }
    let raw_name = crate::fs::file_name(path);
    let raw_name = format!("{}.raw", &raw_name[..raw_name.len() - 4]);
    let mut header = format!(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n\
         CompressedData = {}\nTransformMatrix = {}\nOffset = {}\nCenterOfRotation = 0 0 0\n\
         AnatomicalOrientation = {}\nElementSpacing = {}\nDimSize = {} {} {}\n",
        if single { "True" } else { "False" },
        join(&dirs.concat()),
        join(&offset),
        anatomical_orientation(&dirs),
        join(&g.spacing),
        d0,
        d1,
        d2
    );
    if channels > 1 {
        header.push_str(&format!("ElementNumberOfChannels = {channels}\n"));
    }
    header.push_str(&format!("ElementType = {}\n", met_name(dt)));
    if single {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(4));
        z.write_all(&bytes)
            .and_then(|_| z.finish())
            .map_err(|e| Error::io(path, e))
            .and_then(|compressed| {
                header.push_str(&format!(
                    "CompressedDataSize = {}\nElementDataFile = LOCAL\n",
                    compressed.len()
                ));
                crate::fs::write_atomic(path, |w| {
                    w.write_all(header.as_bytes())?;
                    w.write_all(&compressed)
                })
            })
    } else {
        let raw_path = path.with_file_name(&raw_name);
        // Data first, header last: a header never names a data file that is not complete.
        crate::fs::write_bytes_atomic(&raw_path, &bytes)?;
        header.push_str(&format!("ElementDataFile = {raw_name}\n"));
        crate::fs::write_bytes_atomic(path, header.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_errors_name_the_problem() {
        let ok = b"NDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = LOCAL\n";
        assert!(parse_header(ok).is_ok());
        let e = |b: &[u8]| parse_header(b).unwrap_err();
        assert!(
            e(b"NDims = 3\nDimSize = 2 2\nElementType = MET_SHORT\nElementDataFile = LOCAL\n")
                .contains("DimSize")
        );
        assert!(e(
            b"NDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = LIST\n"
        )
        .contains("not supported"));
        assert!(e(
            b"NDims = 3\nDimSize = 2 2 2\nElementType = MET_STRING\nElementDataFile = LOCAL\n"
        )
        .contains("MET_STRING"));
        assert!(e(b"NDims = 4\nDimSize = 2 2 2 2\nElementDataFile = LOCAL\n").contains("NDims"));
        assert!(
            e(b"\x89PNG\r\n\x1a\n").contains("Key = Value") || e(b"\x89PNG\r\n").contains("text")
        );
        assert!(e(b"NDims = 3\n").contains("ElementDataFile"));
    }

    #[test]
    fn orientation_letters_as_itk() {
        let id = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert_eq!(anatomical_orientation(&id), "RAI");
        let flipped = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]];
        assert_eq!(anatomical_orientation(&flipped), "LPS");
    }
}
