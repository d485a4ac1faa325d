//! Opening a mirror from arbitrary log bytes, through an in-memory file system: never a panic,
//! either a mirror or a typed error, and what loads twice loads the same.
#![no_main]

use std::io;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use syncrepl_state::{LogFile, LogIo, Mirror};

/// A file system holding one file, `state.log`, read-only.
struct OneFile<'a>(&'a [u8]);

impl LogIo for OneFile<'_> {
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        Ok((path.file_name() == Some("state.log".as_ref())).then(|| self.0.to_vec()))
    }

    fn open_append(&mut self, _: &Path) -> io::Result<Box<dyn LogFile>> {
        Err(io::ErrorKind::PermissionDenied.into())
    }

    fn create(&mut self, _: &Path) -> io::Result<Box<dyn LogFile>> {
        Err(io::ErrorKind::PermissionDenied.into())
    }

    fn rename(&mut self, _: &Path, _: &Path) -> io::Result<()> {
        Err(io::ErrorKind::PermissionDenied.into())
    }

    fn sync_dir(&mut self, _: &Path) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = Path::new("/nonexistent/fuzz-state");
    let Ok(mirror) = Mirror::load_with(dir, &mut OneFile(data)) else {
        return;
    };
    let again = Mirror::load_with(dir, &mut OneFile(data)).expect("loads again");
    assert_eq!(mirror.len(), again.len());
    assert_eq!(mirror.cookie(), again.cookie());
    assert_eq!(mirror.next_seq(), again.next_seq());
    for (uuid, entry) in mirror.iter() {
        assert_eq!(again.get(uuid), Some(entry));
    }
});
