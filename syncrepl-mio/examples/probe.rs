//! Connects to a server, runs one sync search and prints what it saw.
use std::time::Instant;
use syncrepl_mio::{ConnectOptions, Connection, Credentials, LdapUrl, StopHandle, Wake};
use syncrepl_proto::{Event, SyncMode, SyncRequest};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url: LdapUrl = args.get(1).ok_or("usage: probe URL [persist]")?.parse()?;
    let mut options = ConnectOptions::new(url.endpoint.clone());
    options.start_tls = url.start_tls;
    options.tls.ca_file = std::env::var_os("CA_FILE").map(Into::into);
    if let (Some(dn), Some(password)) = (url.bind_dn.clone(), url.bind_password.clone()) {
        options.credentials = Credentials::Simple { dn, password };
        options.allow_cleartext_password = true;
    }
    let stop = StopHandle::new();
    let started = Instant::now();
    let mut conn = Connection::open(&options, &stop)?;
    let mode = if args.get(2).is_some() {
        SyncMode::RefreshAndPersist
    } else {
        SyncMode::RefreshOnly
    };
    let mut request = SyncRequest::new(url.base.clone(), mode);
    request.scope = url.scope;
    request.filter = url.filter.clone();
    request.attributes = url.attributes.clone();
    conn.session().start_sync(&request)?;
    let mut entries = 0u64;
    loop {
        match conn.next(None)? {
            Wake::Event(Event::Entry(_)) => entries += 1,
            Wake::Event(Event::RefreshComplete {
                cookie, persist, ..
            }) => {
                eprintln!(
                    "{entries} entries in {:?}, cookie {cookie:?}",
                    started.elapsed()
                );
                if !persist {
                    break;
                }
            }
            Wake::Event(other) => eprintln!("{other:?}"),
            Wake::Drained => {}
            Wake::Stop | Wake::Deadline => break,
        }
    }
    conn.close();
    Ok(())
}
