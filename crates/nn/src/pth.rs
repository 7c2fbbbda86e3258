//! Writes a state dict as `torch.save(state_dict, path)` does (PyTorch's zip format), so that
//! `torch.load` and `model.load_state_dict` read it with no repux code on the PyTorch side.
//!
//! The archive: `archive/data.pkl` (a protocol-2 pickle of an `OrderedDict` whose values are
//! `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`, each
//! storage a persistent id `('storage', torch.FloatStorage, key, 'cpu', numel)`),
//! `archive/byteorder` (`little`), one stored (uncompressed) record `archive/data/{key}` of
//! little-endian f32 per tensor, aligned to 64 bytes as PyTorch aligns them (so
//! `torch.load(mmap=True)` works too), and `archive/version` (`3`). Only the globals that
//! `torch.load(weights_only=True)` allows are named. Reading goes through `pytorch-reader`.

use crate::weights::StateDict;
use std::io::{Cursor, Write};
use std::path::Path;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

/// Pickle protocol-2 opcodes used here.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const GLOBAL: u8 = b'c';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const REDUCE: u8 = b'R';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const BINUNICODE: u8 = b'X';
    pub const BININT: u8 = b'J';
    pub const BINPERSID: u8 = b'Q';
    pub const NEWFALSE: u8 = 0x89;
    pub const SETITEMS: u8 = b'u';
    pub const STOP: u8 = b'.';
}

struct Pickle(Vec<u8>);

impl Pickle {
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(op::GLOBAL);
        self.0
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    fn string(&mut self, s: &str) {
        self.0.push(op::BINUNICODE);
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: usize) -> Result<(), String> {
        let v =
            i32::try_from(v).map_err(|_| format!("{v} does not fit a 32-bit pickle integer"))?;
        self.0.push(op::BININT);
        self.0.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn int_tuple(&mut self, values: &[usize]) -> Result<(), String> {
        self.0.push(op::MARK);
        for &v in values {
            self.int(v)?;
        }
        self.0.push(op::TUPLE);
        Ok(())
    }
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.push(op::EMPTY_TUPLE);
        self.0.push(op::REDUCE);
    }
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The pickle of the state dict; storage `i` is the i-th tensor in key order.
fn data_pkl(sd: &StateDict) -> Result<Vec<u8>, String> {
    let mut p = Pickle(vec![op::PROTO, 2]);
    p.empty_ordered_dict();
    p.0.push(op::MARK);
    for (i, (key, (shape, values))) in sd.0.iter().enumerate() {
        if shape.iter().product::<usize>() != values.len() {
            return Err(format!(
                "tensor {key}: shape {shape:?} does not hold {} values",
                values.len()
            ));
        }
        p.string(key);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(op::MARK);
        // persistent id ('storage', torch.FloatStorage, '<i>', 'cpu', numel)
        p.0.push(op::MARK);
        p.string("storage");
        p.global("torch", "FloatStorage");
        p.string(&i.to_string());
        p.string("cpu");
        p.int(values.len())?;
        p.0.push(op::TUPLE);
        p.0.push(op::BINPERSID);
        p.int(0)?;
        p.int_tuple(shape)?;
        p.int_tuple(&strides(shape))?;
        p.0.push(op::NEWFALSE);
        p.empty_ordered_dict();
        p.0.push(op::TUPLE);
        p.0.push(op::REDUCE);
    }
    p.0.push(op::SETITEMS);
    p.0.push(op::STOP);
    Ok(p.0)
}

/// The bytes of a `.pth` file holding `sd`.
pub fn pth_bytes(sd: &StateDict) -> Result<Vec<u8>, String> {
    let pkl = data_pkl(sd)?;
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .with_alignment(64)
        .large_file(false);
    let record = |zip: &mut zip::ZipWriter<Cursor<Vec<u8>>>,
                  name: &str,
                  bytes: &[u8]|
     -> Result<(), String> {
        let opts = if bytes.len() >= u32::MAX as usize {
            stored.large_file(true)
        } else {
            stored
        };
        zip.start_file(format!("archive/{name}"), opts)
            .map_err(|e| format!("zip record {name}: {e}"))?;
        zip.write_all(bytes)
            .map_err(|e| format!("zip record {name}: {e}"))
    };
    record(&mut zip, "data.pkl", &pkl)?;
    record(&mut zip, "byteorder", b"little")?;
    for (i, (_, (_, values))) in sd.0.iter().enumerate() {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        record(&mut zip, &format!("data/{i}"), &bytes)?;
    }
    record(&mut zip, "version", b"3\n")?;
    Ok(zip.finish().map_err(|e| format!("zip: {e}"))?.into_inner())
}

/// Writes `sd` as a `.pth` file, atomically.
pub fn write_pth(path: &Path, sd: &StateDict) -> Result<(), String> {
    let bytes = pth_bytes(sd)?;
    repux_volume::fs::write_bytes_atomic(path, &bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_row_major() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides(&[5]), vec![1]);
        assert!(strides(&[]).is_empty());
    }

    #[test]
    fn written_pth_reads_back_through_pytorch_reader() {
        let mut sd = StateDict::default();
        sd.0.insert(
            "a.weight".into(),
            (vec![2, 1, 3], vec![1.0, -2.0, 3.5, 4.0, 5.0, -6.25]),
        );
        sd.0.insert("b.bias".into(), (vec![3], vec![0.5, 0.25, 0.125]));
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("x.pth");
        write_pth(&path, &sd).unwrap();
        let back = crate::weights::read_state_dict(&path).unwrap();
        assert_eq!(back, sd);
        let bad = StateDict(
            [("c".to_string(), (vec![2, 2], vec![1.0]))]
                .into_iter()
                .collect(),
        );
        assert!(write_pth(&path, &bad).unwrap_err().contains("tensor c"));
    }
}
