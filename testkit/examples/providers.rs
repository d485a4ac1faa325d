//! Runs throwaway multi-provider slapds for scripts and manual experiments: it prints how to reach
//! each as `key=value` lines (`url1=…`, `ldapi1=…`, `dir1=…`, …), then `ready`, and stops them
//! when its standard input closes.
//!
//! `cargo run -p syncrepl-testkit --example providers -- --count 2 --people 100 [--loglevel stats]`

use std::io::Read;

use syncrepl_testkit::{Options, Providers};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut options = Options::default().tls(false);
    let mut count = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--count" => count = value.parse()?,
            "--people" => options = options.people(value.parse()?),
            "--loglevel" => options = options.loglevel(value),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let providers = Providers::try_start(options, count)?;
    let first = providers.server(0);
    println!("base={}", first.base_dn());
    println!("admin_dn={}", first.admin_dn());
    println!("admin_pw={}", first.admin_password());
    println!("reader_dn={}", first.reader_dn());
    println!("reader_pw={}", first.reader_password());
    for (i, server) in providers.servers().iter().enumerate() {
        let n = i + 1;
        println!("url{n}={}", server.ldap_url());
        println!("ldapi{n}={}", server.ldapi_url());
        println!("pid{n}={}", server.pid().unwrap_or(0));
        println!("dir{n}={}", server.dir().display());
    }
    println!("ready");
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    drop(providers);
    Ok(())
}
