//! Test fixtures for syncrepl's end-to-end tests: a throwaway OpenLDAP slapd with the syncprov
//! overlay on 127.0.0.1 (TLS with certificates made in process, ldapi, SASL EXTERNAL, sample
//! people, helpers that change the directory with the OpenLDAP tools), started and stopped by
//! PID, two or more such servers in multi-provider replication with each other
//! ([`Providers`], serverID 1, 2, … with the same data), a throwaway Kerberos realm whose KDC
//! runs on 127.0.0.1 ([`Realm`]) for SASL GSSAPI binds ([`Options::gssapi`], [`Bind::Gssapi`]),
//! NATS servers with JetStream on 127.0.0.1, alone ([`NatsServer`]) or three in a cluster
//! ([`NatsCluster`]), and a scripted proxy that makes the real server misbehave on purpose.
//!
//! ```no_run
//! use syncrepl_testkit::slapd::{Scope, Slapd};
//!
//! let slapd = Slapd::builder().people(1000).sessionlog(100).start().expect("slapd");
//! let url = slapd.ldap_url(); // ldap://127.0.0.1:PORT
//! slapd.replace("uid=user00001,ou=people,dc=example,dc=com", "sn", &["Changed"]);
//! let text = slapd.search_scope(slapd.base_dn(), Scope::One, "(objectClass=*)", &["dn"]);
//! # let _ = (url, text);
//! ```
//!
//! It needs OpenLDAP's `slapd`, `slapadd` and client tools (Debian: `slapd`, `ldap-utils`), with
//! modules in `/usr/lib/ldap` and schema in `/etc/ldap/schema`; the realm needs MIT Kerberos's
//! KDC and tools and Cyrus SASL's GSSAPI module (Debian: `krb5-kdc`, `krb5-admin-server`,
//! `krb5-user`, `libsasl2-modules-gssapi-mit`), and the NATS fixtures need `nats-server` 2.9 or
//! later (Debian: `nats-server`). `scripts/install-deps` installs them all.
#![forbid(unsafe_code)]

mod certs;
pub mod dirsrv;
mod error;
mod host;
pub mod kerberos;
pub mod ldif;
pub mod multiprovider;
pub mod nats;
mod process;
pub mod proxy;
pub mod samba;
pub mod slapd;
mod tools;

pub use error::Error;
pub use host::KEEP_ENV;
pub use kerberos::Realm;
pub use multiprovider::Providers;
pub use nats::{NatsCluster, NatsNode, NatsOptions, NatsServer};
pub use samba::{SambaDc, SambaOptions};
pub use slapd::{Bind, Gssapi, Options, Output, Peer, ReplicaOf, Scope, Slapd, Transport};
