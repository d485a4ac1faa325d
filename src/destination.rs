//! Where `syncrepl watch` writes the changes, and when a change counts as taken: a pipe once the
//! reader has read it out of the pipe, a file once it is written (and synced as the fsync policy
//! says), a terminal once it is written.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use syncrepl_mio::StopHandle;
use syncrepl_state::FsyncPolicy;

/// Longest pause between two looks at a pipe the reader has not emptied yet.
const MAX_PAUSE: Duration = Duration::from_millis(1);

/// What kind of file the changes go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A pipe: data the kernel took may still be lost with a reader that goes away, so a change
    /// counts only once the reader read it.
    Pipe,
    /// A regular file: synced per the fsync policy.
    File,
    /// A terminal, a socket, a character device: written is taken.
    Other,
}

/// The destination of the change stream.
#[derive(Debug)]
pub struct Destination {
    out: BufWriter<File>,
    kind: Kind,
    fsync: FsyncPolicy,
    synced: Instant,
    name: String,
    stop: StopHandle,
}

fn kind_of(file: &File) -> Kind {
    match rustix::fs::fstat(file) {
        Ok(stat) => match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
            rustix::fs::FileType::Fifo => Kind::Pipe,
            rustix::fs::FileType::RegularFile => Kind::File,
            _ => Kind::Other,
        },
        Err(_) => Kind::Other,
    }
}

impl Destination {
    /// Standard output; a `stop` ends a wait for a reader that does not read.
    pub fn stdout(fsync: FsyncPolicy, stop: StopHandle) -> io::Result<Destination> {
        let fd = io::stdout().as_fd().try_clone_to_owned()?;
        let file = File::from(fd);
        let kind = if io::stdout().is_terminal() {
            Kind::Other
        } else {
            kind_of(&file)
        };
        Ok(Destination::new(file, kind, fsync, "stdout".into(), stop))
    }

    /// A file, appended to (created if missing).
    pub fn file(
        path: &std::path::Path,
        fsync: FsyncPolicy,
        stop: StopHandle,
    ) -> io::Result<Destination> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        let kind = kind_of(&file);
        Ok(Destination::new(
            file,
            kind,
            fsync,
            path.display().to_string(),
            stop,
        ))
    }

    fn new(
        file: File,
        kind: Kind,
        fsync: FsyncPolicy,
        name: String,
        stop: StopHandle,
    ) -> Destination {
        Destination {
            out: BufWriter::with_capacity(1 << 16, file),
            kind,
            fsync,
            synced: Instant::now(),
            name,
            stop,
        }
    }

    /// Where the changes go, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The buffered writer.
    pub fn writer(&mut self) -> &mut dyn Write {
        &mut self.out
    }

    /// Makes everything written so far taken: flushed, then for a pipe read by the reader, for a
    /// file synced when the policy says so. A reader that went away is `BrokenPipe`.
    pub fn commit(&mut self) -> io::Result<()> {
        self.out.flush()?;
        match self.kind {
            Kind::Pipe => self.wait_until_read(),
            Kind::File => {
                let due = match self.fsync {
                    FsyncPolicy::EveryCommit => true,
                    FsyncPolicy::Group { max_delay, .. } => self.synced.elapsed() >= max_delay,
                    FsyncPolicy::Os => false,
                };
                if due {
                    self.out.get_ref().sync_data()?;
                    self.synced = Instant::now();
                }
                Ok(())
            }
            Kind::Other => Ok(()),
        }
    }

    /// Waits until the pipe holds nothing more (the reader read every byte written), watching for
    /// the reader going away. After a stop, a reader that is still reading gets [`STOP_GRACE`]
    /// to take what was written.
    fn wait_until_read(&mut self) -> io::Result<()> {
        let fd = self.out.get_ref().as_fd();
        let mut pause = Duration::from_micros(10);
        let mut stopped_at = None;
        loop {
            if rustix::io::ioctl_fionread(fd)? == 0 {
                return Ok(());
            }
            if reader_gone(fd)? {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            if self.stop.is_stopped()
                && stopped_at.get_or_insert_with(Instant::now).elapsed() >= STOP_GRACE
            {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "stopped before the reader read the last changes",
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 3 / 2).min(MAX_PAUSE);
        }
    }
}

/// How long a stop waits for the pipe's reader to take what was already written: a reader in
/// the middle of a record (Ctrl-C on `syncrepl watch | consumer`) gets it, a stuck one does not
/// hold the stop up.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// Whether the read end of the pipe `fd` is closed (poll reports an error on the write end).
fn reader_gone(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero))?;
    Ok(fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pipe() -> (File, File) {
        let (r, w) = io::pipe().expect("pipe");
        (
            File::from(std::os::fd::OwnedFd::from(r)),
            File::from(std::os::fd::OwnedFd::from(w)),
        )
    }

    #[test]
    fn a_pipe_counts_once_read_and_a_closed_reader_is_an_error() {
        let (mut reader, writer) = pipe();
        let mut dest = Destination::new(
            writer,
            Kind::Pipe,
            FsyncPolicy::Os,
            "pipe".into(),
            StopHandle::new(),
        );
        dest.writer().write_all(b"one\ntwo\n").expect("write");
        let read = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut buf = [0u8; 8];
            reader.read_exact(&mut buf).expect("read");
            reader
        });
        let started = Instant::now();
        dest.commit().expect("read by the reader");
        assert!(
            started.elapsed() >= Duration::from_millis(40),
            "waited for the reader"
        );
        let reader = read.join().expect("reader");
        dest.writer().write_all(b"three\n").expect("write");
        drop(reader);
        let err = dest.commit().expect_err("the reader is gone");
        assert!(matches!(err.kind(), io::ErrorKind::BrokenPipe), "{err}");
    }

    #[test]
    fn unread_data_in_a_pipe_is_not_taken() {
        let (reader, writer) = pipe();
        let stop = StopHandle::new();
        let mut dest = Destination::new(
            writer,
            Kind::Pipe,
            FsyncPolicy::Os,
            "pipe".into(),
            stop.clone(),
        );
        dest.writer().write_all(b"never read\n").expect("write");
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            stop.stop();
        });
        let err = dest.commit().expect_err("not read");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
        stopper.join().expect("stopper");
        drop(reader);
    }

    #[test]
    fn a_reader_still_reading_at_a_stop_gets_what_was_written() {
        let (mut reader, writer) = pipe();
        let stop = StopHandle::new();
        let mut dest = Destination::new(
            writer,
            Kind::Pipe,
            FsyncPolicy::Os,
            "pipe".into(),
            stop.clone(),
        );
        dest.writer()
            .write_all(b"read after the stop\n")
            .expect("write");
        stop.stop();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut line = [0u8; 20];
            reader.read_exact(&mut line).expect("read");
            reader
        });
        dest.commit().expect("read within the grace");
        drop(late.join().expect("reader"));
    }
}
