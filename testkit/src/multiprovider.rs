//! Two or more throwaway OpenLDAP providers in multi-provider replication with each other
//! (`multiprovider on`, formerly mirror mode), for tests of consumers that see cookies with
//! several serverIDs and changes made on either side.
//!
//! [`Providers::start`] takes one set of [`Options`] for all servers and
//!
//! 1. makes each server's temporary directory and certificates, as [`Slapd`] does,
//! 2. picks every server's ports first, then writes each `slapd.conf`: `serverID N` (provider `i`
//!    is serverID `i + 1`), one syncrepl consumer of every other provider (rid = that provider's
//!    serverID, refreshAndPersist, `retry="1 +"`, bound as the rootdn), `multiprovider on` and
//!    syncprov,
//! 3. bulk-loads provider 1 with `slapadd -q -S 1 -w` and copies its `db/data.mdb` into the other
//!    providers' `db/`, so that all hold the same entries with the same entryUUIDs and entryCSNs
//!    (separate loads would give every entry a different entryUUID on each server), and
//! 4. starts them one after the other; each consumer retries every second until its peer answers,
//!    and returns once every provider has taken a change from every other one (each changes the
//!    suffix entry's `description`), so that contextCSN starts with one CSN per serverID.
//!
//! [`Slapd::stop`], [`Slapd::restart`] and [`Slapd::kill9`] on one provider keep its ports, so
//! its peers reconnect to it and it catches up with them when it is back.
//!
//! Agreeing contextCSNs ([`Providers::wait_converged`]) do not always mean the same entries:
//! with slapd 2.5.13 and a session log ([`Options::sessionlog`], 1000 by default), a provider
//! that was down while another made a change and then a delete never gets that change. Its
//! catch-up refresh is served from the session log, deletes first; the consumer takes the
//! delete's CSN as its state and then ignores the older changed entries as "not new enough"
//! (its log says so with loglevel `sync`), yet ends with the same contextCSN. Plain replicas and
//! deletes made before the other changes are not affected, and neither is a server without a
//! session log (`sessionlog(0)`: the catch-up uses a present phase).
//! [`Providers::wait_same_content`] compares the entries themselves.
//!
//! ```no_run
//! use std::time::Duration;
//! use syncrepl_testkit::{Options, Providers};
//!
//! let mut providers = Providers::start(Options::default().people(100), 2);
//! let dn = "uid=user00001,ou=people,dc=example,dc=com";
//! providers.server(0).replace(dn, "sn", &["Changed"]);
//! providers.wait_converged(Duration::from_secs(10)).expect("both have the change");
//! providers.server_mut(1).stop();
//! providers.server(0).replace(dn, "sn", &["Again"]);
//! providers.server_mut(1).restart();
//! providers.wait_converged(Duration::from_secs(10)).expect("provider 2 caught up");
//! ```

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::host::free_port;
use crate::slapd::{Bind, Options, Peer, Scope, Slapd, Transport};
use crate::Error;

/// Running multi-provider servers (serverID 1, 2, …) that replicate every change to each other;
/// dropping it stops them all and removes their directories.
#[derive(Debug)]
pub struct Providers {
    servers: Vec<Slapd>,
}

impl Providers {
    /// Starts `count` providers with `options` (see the [module documentation](self)),
    /// panicking with slapd's output if one cannot start.
    pub fn start(options: Options, count: usize) -> Providers {
        match Providers::try_start(options, count) {
            Ok(providers) => providers,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts `count` providers with `options`; their [`Options::server_id`] and
    /// [`Options::peers`] are set here, and [`Options::replica_of`] must be `None`.
    pub fn try_start(options: Options, count: usize) -> Result<Providers, Error> {
        if !(1..=999).contains(&count) {
            return Err(Error::Options(format!(
                "{count} providers: between 1 and 999 can replicate with each other"
            )));
        }
        if options.replica_of.is_some() || !options.syncprov {
            return Err(Error::Options(
                "providers need syncprov and cannot be replicas of another server".into(),
            ));
        }
        let mut servers = Vec::with_capacity(count);
        for i in 0..count {
            let mut one = options.clone();
            one.server_id = Some(server_id(i));
            one.peers.clear();
            servers.push(Slapd::prepare(one)?);
        }
        let mut providers = Providers { servers };
        providers.configure()?;
        let first = providers.servers[0].dir().join("db").join("data.mdb");
        providers.servers[0].load()?;
        for other in &providers.servers[1..] {
            let to = other.dir().join("db").join("data.mdb");
            copy_sparse(&first, &to).map_err(|e| {
                Error::io(format!("copy {} to {}", first.display(), to.display()), e)
            })?;
        }
        // Another process may take a port between our check and slapd's bind: every
        // configuration names the others' ports, so all of them are picked and written again.
        let mut attempt = 0;
        loop {
            match providers.launch_all() {
                Ok(()) => {
                    providers.wait_linked()?;
                    return Ok(providers);
                }
                Err(Error::Start {
                    port_in_use: true, ..
                }) if attempt < 5 => {
                    attempt += 1;
                    for server in &mut providers.servers {
                        server.stop();
                    }
                    providers.configure()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Picks new ports for every server and writes each configuration with the others as peers.
    fn configure(&mut self) -> Result<(), Error> {
        let mut taken = Vec::with_capacity(2 * self.servers.len());
        for server in &mut self.servers {
            let port = free_port(&taken)?;
            taken.push(port);
            let tls_port = if server.options().tls {
                let tls = free_port(&taken)?;
                taken.push(tls);
                Some(tls)
            } else {
                None
            };
            server.set_ports(port, tls_port);
        }
        let urls = self.urls();
        for (i, server) in self.servers.iter_mut().enumerate() {
            server.options_mut().peers = urls
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, url)| Peer {
                    rid: server_id(j),
                    provider: url.clone(),
                })
                .collect();
            server.write_conf()?;
        }
        Ok(())
    }

    /// Waits until every provider replicates from every other one in the persist stage: each
    /// changes the suffix entry's description in turn and all must agree after each change.
    /// Until then a change made on one provider reaches another only by that one's catch-up
    /// refresh, whose changes syncprov passes on to persistent searches with cookies that carry
    /// no CSN (the whole set follows in a Sync Info newcookie when the refresh ends).
    fn wait_linked(&self) -> Result<(), Error> {
        if self.servers.len() < 2 {
            return Ok(());
        }
        let timeout = self.servers[0].options().start_timeout;
        for (i, server) in self.servers.iter().enumerate() {
            let suffix = server.base_dn().to_owned();
            server.try_modify(&format!(
                "dn: {suffix}\nchangetype: modify\nreplace: description\n\
                 description: provider {} is linked\n",
                server_id(i)
            ))?;
            self.wait_converged(timeout)?;
        }
        Ok(())
    }

    fn launch_all(&mut self) -> Result<(), Error> {
        self.servers.iter_mut().try_for_each(Slapd::launch)
    }

    /// How many providers there are.
    pub fn count(&self) -> usize {
        self.servers.len()
    }

    /// Provider `i` (0-based; its serverID is `i + 1`).
    ///
    /// # Panics
    /// When there is no provider `i`.
    pub fn server(&self, i: usize) -> &Slapd {
        &self.servers[i]
    }

    /// Provider `i`, to stop, restart or kill (0-based; its serverID is `i + 1`).
    ///
    /// # Panics
    /// When there is no provider `i`.
    pub fn server_mut(&mut self, i: usize) -> &mut Slapd {
        &mut self.servers[i]
    }

    /// All providers, in serverID order.
    pub fn servers(&self) -> &[Slapd] {
        &self.servers
    }

    /// Each provider's `ldap://127.0.0.1:PORT`, in serverID order.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(Slapd::ldap_url).collect()
    }

    /// Waits until every running provider reports the same, non-empty set of contextCSN values
    /// ([`Slapd::context_csns`]): each has applied every change the others have. Stopped
    /// providers are left out. The error on timeout shows what each one reported last.
    pub fn wait_converged(&self, timeout: Duration) -> Result<(), Error> {
        self.wait_agreement(timeout, "contextCSN", |s| {
            s.try_context_csns().map(|csns| csns.join(" "))
        })
    }

    /// Waits until every running provider returns the same entries (DN, user attributes,
    /// entryUUID and entryCSN, compared as sorted sets of entries), which also catches a
    /// change that one applied differently. The error on timeout shows entries that differ.
    pub fn wait_same_content(&self, timeout: Duration) -> Result<(), Error> {
        self.wait_agreement(timeout, "content", content)
    }

    /// Polls `state` of every running provider until all are equal and non-empty.
    fn wait_agreement(
        &self,
        timeout: Duration,
        what: &str,
        state: impl Fn(&Slapd) -> Result<String, Error>,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let states: Vec<(usize, Result<String, Error>)> = self
                .servers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.pid().is_some())
                .map(|(i, s)| (i, state(s)))
                .collect();
            let Some((_, first)) = states.first() else {
                return Err(Error::Options("no provider is running".into()));
            };
            let agreed = first.as_ref().is_ok_and(|first| {
                !first.is_empty()
                    && states
                        .iter()
                        .all(|(_, s)| s.as_ref().is_ok_and(|s| s == first))
            });
            if agreed {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_converged(timeout, what, &states));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn not_converged(
        &self,
        after: Duration,
        what: &str,
        states: &[(usize, Result<String, Error>)],
    ) -> Error {
        let mut detail = String::new();
        let reference = states.first().and_then(|(_, s)| s.as_ref().ok());
        for (i, state) in states {
            let _ = write!(
                detail,
                "provider {} ({}) {what}: ",
                i + 1,
                self.servers[*i].ldap_url()
            );
            match (state, reference) {
                (Err(e), _) => {
                    let _ = writeln!(detail, "error: {e}");
                }
                (Ok(s), Some(r)) if s.contains("\n\n") && s != r => {
                    let _ = writeln!(detail, "{}", differences(r, s));
                }
                (Ok(s), _) if s.contains("\n\n") => {
                    let _ = writeln!(detail, "{} entries", s.split("\n\n").count());
                }
                (Ok(s), _) => {
                    let _ = writeln!(detail, "[{s}]");
                }
            }
        }
        Error::NotConverged { after, detail }
    }
}

/// Copies the file `from` to `to`, only its data: `slapadd -q` leaves a `data.mdb` as large as
/// [`Options::maxsize`] (8 GiB by default) that is nearly all a hole, which a plain copy would
/// read and write in full.
fn copy_sparse(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut source = File::open(from)?;
    let len = source.metadata()?.len();
    let mut target = File::create(to)?;
    target.set_len(len)?;
    let mut pos = 0;
    while pos < len {
        let start = match rustix::fs::seek(&source, rustix::fs::SeekFrom::Data(pos)) {
            Ok(start) => start,
            // No data after `pos`: the rest is a hole, as set_len made it.
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = rustix::fs::seek(&source, rustix::fs::SeekFrom::Hole(start))?;
        source.seek(SeekFrom::Start(start))?;
        target.seek(SeekFrom::Start(start))?;
        std::io::copy(&mut (&mut source).take(end - start), &mut target)?;
        pos = end;
    }
    Ok(())
}

/// The serverID of provider `i`.
fn server_id(i: usize) -> u32 {
    // At most 999 providers, checked in try_start.
    u32::try_from(i + 1).unwrap_or(u32::MAX)
}

/// Every entry of `slapd` as `ldapsearch -LLL` prints it, with user attributes, entryUUID and
/// entryCSN, the entries sorted and separated by blank lines.
fn content(slapd: &Slapd) -> Result<String, Error> {
    let text = slapd.ldapsearch(
        Transport::Ldapi,
        Bind::Admin,
        slapd.base_dn(),
        Scope::Sub,
        "(objectClass=*)",
        &["*", "entryUUID", "entryCSN"],
    )?;
    let mut entries: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    entries.sort_unstable();
    Ok(entries.join("\n\n"))
}

/// A short account of how the entries of `theirs` differ from `ours`: how many, and the first
/// few on one side only.
fn differences(ours: &str, theirs: &str) -> String {
    let ours: Vec<&str> = ours.split("\n\n").collect();
    let theirs: Vec<&str> = theirs.split("\n\n").collect();
    let only = |a: &[&str], b: &[&str]| -> Vec<String> {
        a.iter()
            .filter(|e| !b.contains(e))
            .take(3)
            .map(|e| e.replace('\n', " | "))
            .collect()
    };
    format!(
        "{} entries (the first has {}); missing or different here: {:?}; only here: {:?}",
        theirs.len(),
        ours.len(),
        only(&ours, &theirs),
        only(&theirs, &ours)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_copy_keeps_the_data_and_the_length() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        let mut file = File::create(&from).expect("create");
        std::io::Write::write_all(&mut file, b"head").expect("write");
        file.set_len(8 << 20).expect("extend");
        file.seek(SeekFrom::Start(4 << 20)).expect("seek");
        std::io::Write::write_all(&mut file, b"middle").expect("write");
        drop(file);
        copy_sparse(&from, &to).expect("copy");
        assert_eq!(
            std::fs::read(&to).expect("read"),
            std::fs::read(&from).expect("read")
        );
    }

    #[test]
    fn differences_name_entries_on_one_side_only() {
        let ours = "dn: a\nsn: 1\n\ndn: b\nsn: 2";
        let theirs = "dn: a\nsn: 1\n\ndn: b\nsn: 3\n\ndn: c";
        assert_eq!(
            differences(ours, theirs),
            "3 entries (the first has 2); missing or different here: [\"dn: b | sn: 2\"]; \
             only here: [\"dn: b | sn: 3\", \"dn: c\"]"
        );
    }
}
