//! One error type for everything that reads or checks files: it always names the file.

use std::path::{Path, PathBuf};

/// An error tied to the file it came from. `Display` prints `path: problem`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct Error {
    pub path: PathBuf,
    pub kind: ErrorKind,
}

/// What went wrong, without the file name (the [`Error`] carries it).
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("cannot read or write: {0}")]
    Io(std::io::Error),
    #[error("gzip stream is corrupt or truncated ({0})")]
    Gzip(std::io::Error),
    #[error(
        "unrecognised file type (expected .nii, .nii.gz, .hdr/.img, .nrrd/.nhdr or .mha/.mhd)"
    )]
    UnknownFormat,
    #[error("invalid header: {0}")]
    Header(String),
    #[error("unsupported datatype {code} ({name}); repux reads uint8, int8, int16, uint16, int32, uint32, int64, uint64, float32 and float64")]
    Datatype { code: i64, name: String },
    #[error("voxel data is truncated: the header needs {expected} bytes from offset {offset}, the file holds {available}")]
    Truncated {
        offset: u64,
        expected: u64,
        available: u64,
    },
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn new(path: impl AsRef<Path>, kind: ErrorKind) -> Self {
        Error {
            path: path.as_ref().to_path_buf(),
            kind,
        }
    }
    pub fn io(path: impl AsRef<Path>, e: std::io::Error) -> Self {
        Self::new(path, ErrorKind::Io(e))
    }
    pub fn header(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Header(msg.into()))
    }
    pub fn invalid(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Invalid(msg.into()))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
