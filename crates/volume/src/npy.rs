//! NumPy `.npy` (format 1.0/2.0/3.0) reading and writing for the dtypes repux exchanges: f32, f16,
//! u8, u16, i16. C order only. Small enough to own: the header is one Python dict literal.

use crate::error::{Error, Result};
use half::f16;
use std::path::Path;

/// Element types of `.npy` arrays repux reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyType {
    F32,
    F16,
    U8,
    U16,
    I16,
}

impl NpyType {
    fn descr(self) -> &'static str {
        match self {
            NpyType::F32 => "<f4",
            NpyType::F16 => "<f2",
            NpyType::U8 => "|u1",
            NpyType::U16 => "<u2",
            NpyType::I16 => "<i2",
        }
    }
    fn size(self) -> usize {
        match self {
            NpyType::F32 => 4,
            NpyType::F16 | NpyType::U16 | NpyType::I16 => 2,
            NpyType::U8 => 1,
        }
    }
    fn parse(d: &str) -> Option<NpyType> {
        Some(match d {
            "<f4" => NpyType::F32,
            "<f2" => NpyType::F16,
            "|u1" | "<u1" => NpyType::U8,
            "<u2" => NpyType::U16,
            "<i2" => NpyType::I16,
            _ => return None,
        })
    }
}

/// An array read from `.npy`: shape and values widened to f32.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub dtype: NpyType,
    pub data: Vec<f32>,
}

/// The `.npy` header (magic, version 1.0, dict padded so the data start 64-byte aligned).
fn header(shape: &[usize], dtype: NpyType) -> Vec<u8> {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_s}, }}",
        dtype.descr()
    );
    // Pad so that the data start is 64-byte aligned; the header ends with '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Appends `data` encoded as `dtype` (integers rounded; they must fit).
fn encode_values(out: &mut Vec<u8>, data: &[f32], dtype: NpyType) -> Result<(), String> {
    out.reserve(data.len() * dtype.size());
    for &v in data {
        match dtype {
            NpyType::F32 => out.extend_from_slice(&v.to_le_bytes()),
            NpyType::F16 => out.extend_from_slice(&f16::from_f32(v).to_le_bytes()),
            NpyType::U8 | NpyType::U16 | NpyType::I16 => {
                let r = v.round();
                let (lo, hi) = match dtype {
                    NpyType::U8 => (0.0, 255.0),
                    NpyType::U16 => (0.0, 65535.0),
                    _ => (-32768.0, 32767.0),
                };
                if !(r >= lo && r <= hi) {
                    return Err(format!("value {v} does not fit {}", dtype.descr()));
                }
                match dtype {
                    NpyType::U8 => out.push(r as u8),
                    NpyType::U16 => out.extend_from_slice(&(r as u16).to_le_bytes()),
                    _ => out.extend_from_slice(&(r as i16).to_le_bytes()),
                }
            }
        }
    }
    Ok(())
}

/// Encodes `data` (C order, `shape`) as `.npy` bytes of type `dtype` (values are rounded and must
/// fit integer types).
pub fn encode(shape: &[usize], data: &[f32], dtype: NpyType) -> Result<Vec<u8>, String> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(format!("{} values for shape {shape:?}", data.len()));
    }
    let mut out = header(shape, dtype);
    encode_values(&mut out, data, dtype)?;
    Ok(out)
}

/// Writes a `.npy` file slab by slab, so that an array larger than memory in f32 (a case's
/// class probabilities on its native grid) never exists whole: [`NpyWriter::append`] encodes
/// each slab as it comes. The file appears at `path` only when [`NpyWriter::finish`] has seen
/// every value; an abandoned writer leaves nothing behind.
pub struct NpyWriter {
    path: std::path::PathBuf,
    file: std::io::BufWriter<tempfile::NamedTempFile>,
    dtype: NpyType,
    expected: usize,
    written: usize,
}

impl NpyWriter {
    pub fn create(path: &Path, shape: &[usize], dtype: NpyType) -> Result<NpyWriter> {
        use std::io::Write;
        let tmp = crate::fs::temp_beside(path)?;
        let mut file = std::io::BufWriter::new(tmp);
        file.write_all(&header(shape, dtype))
            .map_err(|e| Error::io(path, e))?;
        Ok(NpyWriter {
            path: path.to_path_buf(),
            file,
            dtype,
            expected: shape.iter().product(),
            written: 0,
        })
    }

    /// Appends the next values in C order.
    pub fn append(&mut self, data: &[f32]) -> Result<()> {
        use std::io::Write;
        if self.written + data.len() > self.expected {
            return Err(Error::invalid(
                &self.path,
                format!(
                    "{} values for an array of {}",
                    self.written + data.len(),
                    self.expected
                ),
            ));
        }
        let mut bytes = Vec::new();
        encode_values(&mut bytes, data, self.dtype).map_err(|m| Error::invalid(&self.path, m))?;
        self.file
            .write_all(&bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.written += data.len();
        Ok(())
    }

    /// Checks that every value was written, syncs and moves the file into place.
    pub fn finish(self) -> Result<()> {
        if self.written != self.expected {
            return Err(Error::invalid(
                &self.path,
                format!("{} of {} values written", self.written, self.expected),
            ));
        }
        let tmp = self
            .file
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        crate::fs::persist(tmp, &self.path)
    }
}

/// Writes a `.npy` file atomically.
pub fn write(path: &Path, shape: &[usize], data: &[f32], dtype: NpyType) -> Result<()> {
    let bytes = encode(shape, data, dtype).map_err(|m| Error::invalid(path, m))?;
    crate::fs::write_bytes_atomic(path, &bytes)
}

fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k = format!("'{key}':");
    let start = header.find(&k)? + k.len();
    Some(header[start..].trim_start())
}

/// Parses `.npy` bytes (never panics on bad input).
pub fn decode(b: &[u8]) -> Result<NpyArray, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (missing \\x93NUMPY magic)".into());
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = b.get(start..start + hlen).ok_or("header is truncated")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr")
        .and_then(|v| v.strip_prefix('\''))
        .and_then(|v| v.split('\'').next())
        .ok_or("header lacks 'descr'")?;
    let dtype = NpyType::parse(descr).ok_or_else(|| format!("dtype {descr:?} is not supported (use float32, float16, uint8, uint16 or int16, little-endian)"))?;
    if dict_value(header, "fortran_order")
        .map(|v| v.starts_with("True"))
        .unwrap_or(false)
    {
        return Err(
            "Fortran-ordered arrays are not supported; save with numpy.ascontiguousarray".into(),
        );
    }
    let shape_s = dict_value(header, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or("header lacks 'shape'")?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad shape ({shape_s})"))?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &s| a.checked_mul(s))
        .ok_or("shape overflows")?;
    let body = &b[start + hlen..];
    let need = n.checked_mul(dtype.size()).ok_or("shape overflows")?;
    if body.len() < need {
        return Err(format!(
            "data is truncated: shape {shape:?} needs {need} bytes, the file holds {}",
            body.len()
        ));
    }
    let data = (0..n)
        .map(|i| {
            let p = &body[i * dtype.size()..];
            match dtype {
                NpyType::F32 => f32::from_le_bytes([p[0], p[1], p[2], p[3]]),
                NpyType::F16 => f16::from_le_bytes([p[0], p[1]]).to_f32(),
                NpyType::U8 => p[0] as f32,
                NpyType::U16 => u16::from_le_bytes([p[0], p[1]]) as f32,
                NpyType::I16 => i16::from_le_bytes([p[0], p[1]]) as f32,
            }
        })
        .collect();
    Ok(NpyArray { shape, dtype, data })
}

/// Reads a `.npy` file.
pub fn read(path: &Path) -> Result<NpyArray> {
    let b = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&b).map_err(|m| Error::invalid(path, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_writer_equals_whole_encode_and_leaves_nothing_when_abandoned() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<f32> = (0..60).map(|i| i as f32 / 7.0 - 3.0).collect();
        let path = d.path().join("p.npy");
        let mut w = NpyWriter::create(&path, &[3, 4, 5], NpyType::F16).unwrap();
        for slab in data.chunks(20) {
            w.append(slab).unwrap();
        }
        assert!(!path.exists(), "nothing at the final path before finish");
        w.finish().unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            encode(&[3, 4, 5], &data, NpyType::F16).unwrap()
        );
        let short = d.path().join("short.npy");
        let mut w = NpyWriter::create(&short, &[3, 4, 5], NpyType::F16).unwrap();
        w.append(&data[..20]).unwrap();
        assert!(w.finish().unwrap_err().to_string().contains("20 of 60"));
        let mut w = NpyWriter::create(&short, &[2], NpyType::F32).unwrap();
        assert!(w.append(&data[..3]).is_err());
        drop(w);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "only the finished file remains"
        );
    }

    #[test]
    fn roundtrip_all_types() {
        let data = vec![0.0, 1.0, 2.5, 255.0, 7.0, 3.0];
        for t in [NpyType::F32, NpyType::F16] {
            let a = decode(&encode(&[2, 3], &data, t).unwrap()).unwrap();
            assert_eq!(a.shape, vec![2, 3]);
            assert_eq!(a.data, data);
        }
        for t in [NpyType::U8, NpyType::U16, NpyType::I16] {
            let a = decode(&encode(&[6], &data, t).unwrap()).unwrap();
            assert_eq!(a.data, vec![0.0, 1.0, 3.0, 255.0, 7.0, 3.0]); // 2.5 rounds away from zero
        }
        assert!(encode(&[1], &[256.0], NpyType::U8).is_err());
        assert!(decode(b"\x93NUMPY\x01\x00\xff\x00{'descr'")
            .unwrap_err()
            .contains("truncated"));
        assert!(decode(b"hello world").unwrap_err().contains("magic"));
    }
}
