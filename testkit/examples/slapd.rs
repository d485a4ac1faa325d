//! Runs a throwaway slapd for scripts (the benchmark, manual experiments): it prints how to reach
//! it as `key=value` lines, then `ready`, and stops it when its standard input closes.
//!
//! `cargo run --release -p syncrepl-testkit --example slapd -- --people 100000 [--sessionlog 1000]`

use std::io::Read;
use std::time::Instant;

use syncrepl_testkit::Slapd;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut options = Slapd::builder().tls(false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<usize, Box<dyn std::error::Error>> {
            let v = args.next().ok_or(format!("{arg} needs a value"))?;
            Ok(v.parse()?)
        };
        options = match arg.as_str() {
            "--people" => options.people(value()?),
            "--sessionlog" => options.sessionlog(value()?),
            other => return Err(format!("unknown argument {other}").into()),
        };
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
