//! Runs a throwaway slapd for scripts (the benchmark, manual experiments): it prints how to reach
//! it as `key=value` lines, then `ready`, and stops it when its standard input closes.
//!
//! `cargo run --release -p syncrepl-testkit --example slapd -- --people 100000 [--sessionlog 1000]`
//!
//! With `--replica-of URL --replica-bind DN --replica-password PW` it starts an empty OpenLDAP
//! replica of that server instead, filled by slapd's own syncrepl consumer.

use std::io::Read;
use std::time::Instant;

use syncrepl_testkit::{ReplicaOf, Slapd};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut options = Slapd::builder().tls(false);
    let mut replica = ReplicaOf {
        provider: String::new(),
        bind_dn: String::new(),
        password: String::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--people" => options = options.people(value.parse()?),
            "--sessionlog" => options = options.sessionlog(value.parse()?),
            "--replica-of" => replica.provider = value,
            "--replica-bind" => replica.bind_dn = value,
            "--replica-password" => replica.password = value,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !replica.provider.is_empty() {
        options = options.replica_of(replica);
    }
    let started = Instant::now();
    let slapd = options.start()?;
    println!("url={}", slapd.ldap_url());
    println!("ldapi={}", slapd.ldapi_url());
    println!("base={}", slapd.base_dn());
    println!("admin_dn={}", slapd.admin_dn());
    println!("admin_pw={}", slapd.admin_password());
    println!("reader_dn={}", slapd.reader_dn());
    println!("reader_pw={}", slapd.reader_password());
    println!("pid={}", slapd.pid().unwrap_or(0));
    println!("dir={}", slapd.dir().display());
    println!("start_s={:.2}", started.elapsed().as_secs_f64());
    println!("ready");
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    drop(slapd);
    Ok(())
}
