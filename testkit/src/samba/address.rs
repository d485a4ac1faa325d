//! Claiming a loopback address of its own for each instance: Samba's LDAP ports are fixed, so
//! instances that run at once differ by address (see the module documentation of
//! [`crate::samba`]).

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;

/// The ports Samba's LDAP server binds, all fixed.
const PORTS: [u16; 4] = [389, 636, 3268, 3269];
/// The last byte of the loopback addresses instances may claim (`127.0.0.1` is left to the
/// other fixtures and to system services).
const HOSTS: std::ops::RangeInclusive<u8> = 2..=254;

/// A loopback address claimed by an exclusive lock on its lock file, kept open.
#[derive(Debug)]
pub(super) struct Claim {
    pub(super) ip: Ipv4Addr,
    _lock: File,
}

/// Claims a free loopback address: its lock file locked, its LDAP ports free now.
pub(super) fn claim_address(avoid: &[Ipv4Addr]) -> Result<Claim, Error> {
    let count = u32::from(HOSTS.end() - HOSTS.start()) + 1;
    // Start somewhere different in each process, so that concurrent ones rarely meet.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let first = std::process::id().wrapping_mul(31).wrapping_add(nanos) % count;
    for i in 0..count {
        let offset = u8::try_from((first + i) % count).unwrap_or(0);
        let ip = Ipv4Addr::new(127, 0, 0, HOSTS.start() + offset);
        if avoid.contains(&ip) {
            continue;
        }
        let path = PathBuf::from(format!("/tmp/syncrepl-testkit-samba-{ip}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .or_else(|_| File::open(&path));
        let Ok(file) = file else {
            continue;
        };
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let in_use = PORTS.iter().any(|&port| {
            matches!(TcpListener::bind((ip, port)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
        });
        if !in_use {
            return Ok(Claim { ip, _lock: file });
        }
    }
    Err(Error::Options(format!(
        "no free loopback address 127.0.0.{}-{} for Samba (all locked or in use)",
        HOSTS.start(),
        HOSTS.end()
    )))
}
