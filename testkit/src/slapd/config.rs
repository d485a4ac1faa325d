//! The `slapd.conf` that [`Options`] describe: schema, modules, TLS, identity mappings, the
//! database with its access rules, replication, and the syncprov overlay.

use std::fmt::Write as _;
use std::path::Path;

use super::{Options, ADMIN_PW};
use crate::certs;

impl Options {
    /// The `slapd.conf` for a server in `dir`.
    pub(super) fn slapd_conf(&self, dir: &Path) -> String {
        let d = dir.display();
        let suffix = &self.suffix;
        let admin = self.admin_dn();
        let reader = self.reader_dn();
        let mut c = String::new();
        c.push_str("# Written by syncrepl-testkit for one test run.\n");
        for schema in ["core", "cosine", "inetorgperson", "nis"] {
            let _ = writeln!(c, "include /etc/ldap/schema/{schema}.schema");
        }
        c.push_str("modulepath /usr/lib/ldap\nmoduleload back_mdb\n");
        if self.syncprov {
            c.push_str("moduleload syncprov\n");
        }
        let _ = writeln!(
            c,
            "pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\nloglevel {}\n\
             sizelimit unlimited\ntimelimit unlimited\ntool-threads 1",
            self.loglevel
        );
        if let Some(id) = self.server_id {
            let _ = writeln!(c, "serverID {id}");
        }
        if self.tls {
            let _ = writeln!(
                c,
                "TLSCACertificateFile {d}/{}\nTLSCertificateFile {d}/{}\n\
                 TLSCertificateKeyFile {d}/{}\nTLSVerifyClient allow",
                certs::CA_PEM,
                certs::SERVER_PEM,
                certs::SERVER_KEY
            );
        }
        // SASL EXTERNAL: the identity of a local process over ldapi (any uid and gid, root's
        // being gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth), and the subject of the
        // client certificate over TLS, are both the reader.
        let _ = writeln!(
            c,
            "authz-regexp \"^gidNumber=[0-9]+.uidNumber=[0-9]+,cn=peercred,cn=external,cn=auth$\" \"{reader}\"\n\
             authz-regexp \"^{}$\" \"{reader}\"",
            certs::CLIENT_SUBJECT
        );
        if let Some(g) = &self.gssapi {
            // The GSSAPI identity of `NAME@REALM` is `uid=NAME,cn=realm,cn=gssapi,cn=auth`, the
            // realm in lower case as slapd normalizes the DN before matching.
            let realm = g.realm.to_ascii_lowercase();
            let _ = writeln!(
                c,
                "sasl-host localhost\nsasl-realm {}\n\
                 authz-regexp \"^uid={},cn={realm},cn=gssapi,cn=auth$\" \"{reader}\"\n\
                 authz-regexp \"^uid=([^,/]+),cn={realm},cn=gssapi,cn=auth$\" \"uid=$1,ou=people,{suffix}\"",
                g.realm,
                crate::kerberos::READER_PRINCIPAL,
            );
        }
        if let Some(props) = &self.sasl_secprops {
            let _ = writeln!(c, "sasl-secprops {props}");
        }
        if let Some(factors) = &self.security {
            let _ = writeln!(c, "security {factors}");
        }
        let _ = writeln!(
            c,
            "\ndatabase mdb\nsuffix \"{suffix}\"\nrootdn \"{admin}\"\nrootpw {ADMIN_PW}\n\
             directory {d}/db\nmaxsize {}\ndbnosync\n\
             sizelimit unlimited\ntimelimit unlimited\n\
             index objectClass eq\nindex entryUUID,entryCSN eq\nindex uid eq",
            self.maxsize
        );
        let anonymous = if self.anonymous_read {
            "read"
        } else {
            c.push_str("require authc\n");
            "auth"
        };
        let _ = writeln!(
            c,
            "access to attrs=userPassword\n    by dn.exact=\"{reader}\" read\n    by self write\n    \
             by anonymous auth\n    by * none\n\
             access to *\n    by dn.exact=\"{reader}\" read\n    by users read\n    by anonymous {anonymous}"
        );
        if let Some(r) = &self.replica_of {
            let _ = writeln!(
                c,
                "syncrepl rid=001 provider={} type=refreshAndPersist retry=\"1 +\"\n  \
                 searchbase=\"{suffix}\" scope=sub schemachecking=off\n  \
                 bindmethod=simple binddn=\"{}\" credentials={}",
                r.provider, r.bind_dn, r.password
            );
        }
        for peer in &self.peers {
            let _ = writeln!(
                c,
                "syncrepl rid={:03} provider={} type=refreshAndPersist retry=\"1 +\"\n  \
                 searchbase=\"{suffix}\" scope=sub schemachecking=off\n  \
                 bindmethod=simple binddn=\"{admin}\" credentials={ADMIN_PW}",
                peer.rid, peer.provider
            );
        }
        if !self.peers.is_empty() {
            c.push_str("multiprovider on\n");
        }
        if self.syncprov {
            let _ = writeln!(
                c,
                "overlay syncprov\nsyncprov-checkpoint 100 1\nsyncprov-sessionlog {}",
                self.sessionlog
            );
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slapd::Gssapi;

    #[test]
    fn the_configuration_follows_the_options() {
        let dir = Path::new("/t");
        let conf = Options::default().slapd_conf(dir);
        assert!(conf.contains("moduleload syncprov\n"));
        assert!(conf.contains("syncprov-sessionlog 1000\n"));
        assert!(conf.contains("TLSCertificateFile /t/server.pem\n"));
        assert!(conf.contains("by anonymous read\n"));
        assert!(conf.contains("maxsize 8589934592\n"));
        let conf = Options::default()
            .syncprov(false)
            .tls(false)
            .anonymous_read(false)
            .suffix("o=acme")
            .slapd_conf(dir);
        assert!(!conf.contains("syncprov"));
        assert!(!conf.contains("TLS"));
        assert!(conf.contains("require authc\n"));
        assert!(conf.contains("rootdn \"cn=admin,o=acme\"\n"));
    }

    #[test]
    fn gssapi_and_security_are_only_there_when_asked_for() {
        let dir = Path::new("/t");
        let plain = Options::default().slapd_conf(dir);
        for absent in [
            "sasl-host",
            "sasl-realm",
            "gssapi",
            "sasl-secprops",
            "security",
        ] {
            assert!(!plain.contains(absent), "{absent}");
        }
        let options = Options {
            gssapi: Some(Gssapi {
                realm: "EXAMPLE.TEST".into(),
                krb5_config: "/k/krb5.conf".into(),
                keytab: "/k/service.keytab".into(),
            }),
            ..Options::default().suffix("o=acme")
        }
        .sasl_secprops("noanonymous,noplain,minssf=56")
        .security("ssf=56");
        assert!(options.check().is_ok());
        let conf = options.slapd_conf(dir);
        assert!(conf.contains("\nsasl-host localhost\nsasl-realm EXAMPLE.TEST\n"));
        assert!(conf.contains(
            "authz-regexp \"^uid=reader,cn=example.test,cn=gssapi,cn=auth$\" \"cn=reader,o=acme\"\n"
        ));
        assert!(conf.contains(
            "authz-regexp \"^uid=([^,/]+),cn=example.test,cn=gssapi,cn=auth$\" \"uid=$1,ou=people,o=acme\"\n"
        ));
        assert!(conf.contains("\nsasl-secprops noanonymous,noplain,minssf=56\nsecurity ssf=56\n"));
        // Global directives, before the database.
        assert!(conf.find("security ssf=56") < conf.find("database mdb"));
        assert!(Options::default().security("a\nb").check().is_err());
        assert!(Options::default().sasl_secprops("").check().is_err());
        let mut lower = options.clone();
        if let Some(g) = &mut lower.gssapi {
            g.realm = "example.test".into();
        }
        assert!(lower.check().is_err());
    }

    #[test]
    fn multi_provider_servers_have_a_server_id_and_peers() {
        let options = Options::default()
            .server_id(2)
            .peer(1, "ldap://127.0.0.1:1000")
            .peer(3, "ldap://127.0.0.1:3000");
        assert!(options.check().is_ok());
        let conf = options.slapd_conf(Path::new("/t"));
        assert!(conf.contains("\nserverID 2\n"));
        assert!(conf.contains("syncrepl rid=001 provider=ldap://127.0.0.1:1000 "));
        assert!(conf.contains("syncrepl rid=003 provider=ldap://127.0.0.1:3000 "));
        assert!(conf.contains("binddn=\"cn=admin,dc=example,dc=com\" credentials=adminpw\n"));
        let (multi, overlay) = (
            conf.find("multiprovider on\n").expect("multiprovider"),
            conf.find("overlay syncprov").expect("syncprov"),
        );
        assert!(conf.rfind("syncrepl rid=").is_some_and(|last| last < multi) && multi < overlay);
        assert!(!Options::default()
            .slapd_conf(Path::new("/t"))
            .contains("serverID"));

        assert!(Options::default().server_id(0).check().is_err());
        assert!(Options::default().server_id(4096).check().is_err());
        let duplicate = Options::default().server_id(1).peer(2, "a").peer(2, "b");
        assert!(duplicate.check().is_err());
        assert!(Options::default()
            .server_id(1)
            .peer(2, "a b")
            .check()
            .is_err());
    }
}
