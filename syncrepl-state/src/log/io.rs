//! The file operations of the log, behind traits so that tests can inject torn writes, failed
//! syncs, full disks and failures to create, lock or read the state directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An open log file, behind a trait so tests can inject torn writes, failed syncs and full disks.
pub trait LogFile: Send {
    /// Appends bytes.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Flushes data to stable storage.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// A second handle on the same file, so that data can be written or synced on another thread
    /// while this one goes on; `None` where that is not possible.
    fn sync_handle(&self) -> Option<Box<dyn LogFile>> {
        None
    }
}

/// The file operations the log needs.
pub trait LogIo: Send {
    /// Reads a whole file, or `None` if it does not exist.
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Opens a file for reading with its length, or `None` if it does not exist.
    fn open_read(&mut self, path: &Path) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        Ok(self.read(path)?.map(|data| {
            let len = data.len() as u64;
            (Box::new(io::Cursor::new(data)) as Box<dyn Read + Send>, len)
        }))
    }
    /// Opens a file for appending, creating it (mode 0600) if needed.
    fn open_append(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Creates or truncates a file (mode 0600) for writing.
    fn create(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Renames a file.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Syncs a directory, making a rename durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// Creates the state directory if needed, private to its owner (mode 0700, best effort: the
    /// files inside are 0600 whatever the directory's mode).
    fn create_dir(&mut self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        set_private(dir);
        Ok(())
    }
    /// Takes the exclusive lock of the file `path` (created 0600 if needed), or says who holds
    /// it; the lock lasts as long as the returned guard.
    fn lock(&mut self, path: &Path) -> io::Result<Lock> {
        lock_file(path)
    }
}

/// What taking a state directory's lock gave.
pub enum Lock {
    /// This process holds the lock until the guard is dropped.
    Held(Box<dyn Send>),
    /// Another process holds it; the pid it wrote, if readable.
    Busy(Option<u32>),
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lock::Held(_) => f.write_str("Held"),
            Lock::Busy(pid) => write!(f, "Busy({pid:?})"),
        }
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdIo;

struct StdFile(File);

impl LogFile for StdFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_handle(&self) -> Option<Box<dyn LogFile>> {
        self.0
            .try_clone()
            .ok()
            .map(|f| Box::new(StdFile(f)) as Box<dyn LogFile>)
    }
}

impl LogIo for StdIo {
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn open_read(&mut self, path: &Path) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        match File::open(path) {
            Ok(file) => {
                let len = file.metadata()?.len();
                Ok(Some((
                    Box::new(io::BufReader::with_capacity(1 << 20, file)),
                    len,
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn open_append(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(StdFile(file)))
    }
    fn create(&mut self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(StdFile(file)))
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Locks `path` with `flock`, writing our pid into it as a hint for whoever finds it locked.
fn lock_file(path: &Path) -> io::Result<Lock> {
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            return Ok(Lock::Busy(holder));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    // The pid is only a hint for the error message; failing to write it is harmless.
    let _ = lock.set_len(0);
    let _ = (&lock).write_all(std::process::id().to_string().as_bytes());
    Ok(Lock::Held(Box::new(lock)))
}

fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // Best effort: the files inside are 0600 whatever the directory's mode.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}
