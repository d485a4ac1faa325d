//! Runs a throwaway slapd for scripts (the benchmark, manual experiments): it prints how to reach
//! it as `key=value` lines, then `ready`, and stops it when its standard input closes.
//!
//! `cargo run --release -p syncrepl-testkit --example slapd -- --people 100000 [--sessionlog 1000]`
//!
//! With `--replica-of URL --replica-bind DN --replica-password PW` it starts an empty OpenLDAP
//! replica of that server instead, filled by slapd's own syncrepl consumer.
//!
//! With `--gssapi` it also starts a Kerberos realm on 127.0.0.1 and lets slapd accept GSSAPI
//! binds from it (`reader@REALM` is the reader), gets the reader a ticket, and prints what a
//! client needs besides: `realm=`, `krb5_config=` (for `KRB5_CONFIG`), `ccache=` (a file cache
//! with the reader's ticket, for `KRB5CCNAME=FILE:…`), `client_keytab=` (the reader's keys, for
//! `KRB5_CLIENT_KTNAME`), `principal=` and `kdc_port=`. `--sasl-secprops PROPS` and
//! `--security FACTORS` set slapd's `sasl-secprops` and `security`.

use std::io::Read;
use std::time::Instant;

use syncrepl_testkit::{Realm, ReplicaOf, Slapd};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut options = Slapd::builder().tls(false);
    let mut replica = ReplicaOf {
        provider: String::new(),
        bind_dn: String::new(),
        password: String::new(),
    };
    let mut gssapi = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--gssapi" {
            gssapi = true;
            continue;
        }
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--people" => options = options.people(value.parse()?),
            "--sessionlog" => options = options.sessionlog(value.parse()?),
            "--replica-of" => replica.provider = value,
            "--replica-bind" => replica.bind_dn = value,
            "--replica-password" => replica.password = value,
            "--sasl-secprops" => options = options.sasl_secprops(value),
            "--security" => options = options.security(value),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !replica.provider.is_empty() {
        options = options.replica_of(replica);
    }
    let started = Instant::now();
    // Dropped after the server, which reads the realm's keytab and krb5.conf.
    let realm = if gssapi {
        let realm = Realm::start()?;
        options = options.gssapi(&realm);
        Some(realm)
    } else {
        None
    };
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
    if let Some(realm) = &realm {
        let ccache = realm.dir().join("reader.ccache");
        realm.kinit(&ccache, &realm.reader_principal(), None)?;
        println!("realm={}", realm.realm());
        println!("krb5_config={}", realm.krb5_config().display());
        println!("ccache={}", ccache.display());
        println!("client_keytab={}", realm.client_keytab().display());
        println!("principal={}", realm.reader_principal());
        println!("kdc_port={}", realm.kdc_port());
    }
    println!("start_s={:.2}", started.elapsed().as_secs_f64());
    println!("ready");
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    drop(slapd);
    drop(realm);
    Ok(())
}
