//! Writing files so that a reader never sees half of one: every output goes to a temporary file
//! in the destination folder, is flushed and synced, gets ordinary permissions, and is renamed
//! over the destination only when complete. An interrupted run leaves the previous file (or
//! none), never a truncated one.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// A temporary file beside `path` that [`persist`] later renames onto it.
pub fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".repux-tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))
}

/// Syncs a completely written temporary file, gives it ordinary permissions and renames it onto
/// `path`.
pub fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    // tempfile creates 0600 files; outputs are ordinary files (0644 before the umask).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes `path` through `body` atomically (a temporary file renamed into place on success).
pub fn write_atomic(
    path: &Path,
    body: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temp_beside(path)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file());
        body(&mut w).map_err(|e| Error::io(path, e))?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    persist(tmp, path)
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Writes `value` as pretty-printed JSON, atomically.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::invalid(path, format!("cannot serialise as JSON: {e}")))?;
    write_bytes_atomic(path, text.as_bytes())
}

/// Reads and parses a JSON file; errors name the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(path, format!("invalid or truncated JSON: {e}")))
}

/// The last component of `path` as text (invalid UTF-8 replaced), empty where there is none
/// (`/`, a path ending in `..`): a case id or a dataset's name, never a file to read.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}
