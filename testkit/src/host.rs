//! What a fixture takes from the machine: a temporary directory of its own (kept for a
//! post-mortem with [`KEEP_ENV`]) and free ports on 127.0.0.1.

use std::net::TcpListener;
use std::path::PathBuf;

use crate::Error;

/// Environment variable that keeps the temporary directory after the test (its path is printed).
pub const KEEP_ENV: &str = "SYNCREPL_TESTKIT_KEEP";

/// A new temporary directory whose name starts with `prefix`, and the guard that removes it when
/// dropped; `None` instead of the guard when [`KEEP_ENV`] is set, so that the directory stays
/// (its path is printed).
pub(crate) fn temp_dir(prefix: &str) -> Result<(PathBuf, Option<tempfile::TempDir>), Error> {
    let temp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| Error::io("make a temporary directory", e))?;
    let dir = temp.path().to_path_buf();
    if std::env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        eprintln!("syncrepl-testkit: keeping {}", dir.display());
        let _ = temp.keep();
        Ok((dir, None))
    } else {
        Ok((dir, Some(temp)))
    }
}

/// A free port on 127.0.0.1 now; `avoid` are ports already chosen.
pub(crate) fn free_port(avoid: &[u16]) -> Result<u16, Error> {
    for _ in 0..20 {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("bind a loopback port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("read a bound port", e))?
            .port();
        if !avoid.contains(&port) {
            return Ok(port);
        }
    }
    Err(Error::Options("no free loopback port".into()))
}
