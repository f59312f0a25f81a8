//! Owner-only files and folders for the embedded store, which holds names, e-mails and reports.
//! Modes are set explicitly after creation, so the process umask neither widens nor breaks them;
//! an existing file or folder that others may read is tightened, with a warning.

use std::io;
use std::path::Path;

pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

#[cfg(unix)]
mod imp {
    use super::{DIR_MODE, FILE_MODE};
    use std::fs::{DirBuilder, OpenOptions, Permissions};
    use std::io;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    use std::path::Path;

    pub fn create_dirs(path: &Path) -> io::Result<()> {
        if path.is_dir() {
            return Ok(());
        }
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)?;
        std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
    }

    pub fn create_file(path: &Path) -> io::Result<bool> {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)
        {
            Ok(f) => {
                f.set_permissions(Permissions::from_mode(FILE_MODE))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn tighten(path: &Path, mode: u32) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let current = meta.permissions().mode() & 0o777;
        if current & 0o077 == 0 {
            return;
        }
        match std::fs::set_permissions(path, Permissions::from_mode(mode)) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                was = format!("{current:o}"),
                now = format!("{mode:o}"),
                "store file was readable by other users; made owner-only"
            ),
            Err(e) => tracing::error!(
                path = %path.display(),
                mode = format!("{current:o}"),
                error = %e,
                "store file is readable by other users and cannot be made owner-only: fix its permissions"
            ),
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use std::io;
    use std::path::Path;

    pub fn create_dirs(path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    pub fn create_file(path: &Path) -> io::Result<bool> {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn tighten(_path: &Path, _mode: u32) {}
}

/// A folder only this user may enter: created so (missing parents too), tightened if it exists.
pub fn private_dir(path: &Path) -> io::Result<()> {
    imp::create_dirs(path)?;
    imp::tighten(path, DIR_MODE);
    Ok(())
}

/// The SQLite file: created empty and owner-only before SQLite opens it (SQLite gives its `-wal`
/// and `-shm` files the database file's mode), or tightened with its journal files if it exists.
/// Missing parent folders are created owner-only; an existing parent is left alone (it may be
/// the working directory).
pub fn private_db_file(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        imp::create_dirs(dir)?;
    }
    if !imp::create_file(path)? {
        imp::tighten(path, FILE_MODE);
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        imp::tighten(Path::new(&side), FILE_MODE);
    }
    Ok(())
}
