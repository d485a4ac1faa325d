//! Running a command-line tool with a bounded wait: its input is written and its output read on
//! helper threads, so a tool that writes a lot never blocks on a full pipe, and one that hangs is
//! killed (it is our own child) when the deadline passes.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Error;

/// What a tool printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code, `None` when a signal ended it.
    pub code: Option<i32>,
    /// Its standard output (lossily decoded as UTF-8).
    pub stdout: String,
    /// Its standard error (lossily decoded as UTF-8).
    pub stderr: String,
}

impl Output {
    /// Whether the tool exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// `Ok(self)` if the tool exited with code 0, else [`Error::Tool`] naming `tool` and `args`.
    pub(crate) fn checked(self, tool: &str, args: &[&str]) -> Result<Output, Error> {
        if self.success() {
            Ok(self)
        } else {
            Err(Error::Tool {
                tool: format!("{tool} {}", args.join(" ")).trim_end().to_owned(),
                code: self.code,
                stderr: self.stderr,
            })
        }
    }
}

fn reader(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error ends the capture; what was read so far is kept.
        let _ = from.read_to_end(&mut buf);
        buf
    })
}

/// The arguments of an `ldapsearch -LLL` of `base` with `scope` (`base`, `one`, `sub`), unwrapped
/// lines, `filter` and `attrs`, as both fixtures' helpers run it.
pub(crate) fn ldapsearch_args<'a>(
    base: &'a str,
    scope: &'a str,
    filter: &'a str,
    attrs: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "-LLL",
        "-o",
        "ldif-wrap=no",
        "-b",
        base,
        "-s",
        scope,
        filter,
    ];
    args.extend_from_slice(attrs);
    args
}

/// Runs `command` with `input` on its standard input and waits at most `timeout` for it.
pub(crate) fn run(
    mut command: Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, Error> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("run {program}"), e))?;
    let writer = match (child.stdin.take(), input) {
        (Some(mut stdin), Some(input)) => {
            let input = input.to_vec();
            // A tool that exits early closes the pipe: the error it causes here is no news.
            Some(std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            }))
        }
        _ => None,
    };
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                // Our own child: kill it so that the pipes close and the readers end.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::io(format!("wait for {program}"), e)),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let collect = |h: Option<JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    match status {
        Some(status) => Ok(Output {
            code: status.code(),
            stdout,
            stderr,
        }),
        None => Err(Error::Timeout {
            what: program,
            after: timeout,
            output: stderr,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_large_output_and_input() {
        let mut cmd = Command::new("cat");
        cmd.arg("-");
        let input = vec![b'x'; 1 << 20];
        let out = run(cmd, Some(&input), Duration::from_secs(10)).expect("cat");
        assert!(out.success());
        assert_eq!(out.stdout.len(), 1 << 20);
        cmd = Command::new("sh");
        cmd.args(["-c", "echo oops >&2; exit 3"]);
        let out = run(cmd, None, Duration::from_secs(10)).expect("sh");
        assert_eq!((out.code, out.stderr.as_str()), (Some(3), "oops\n"));
    }

    #[test]
    fn a_hanging_tool_is_killed_at_the_deadline() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let started = Instant::now();
        let err = run(cmd, None, Duration::from_millis(200)).expect_err("timeout");
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
