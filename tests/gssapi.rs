//! End-to-end tests of SASL GSSAPI binds (RFC 4752) with each security layer, against a real
//! MIT Kerberos KDC and a slapd that accepts Kerberos, both started by the testkit.

#[allow(dead_code, reason = "each test binary uses some of the shared helpers")]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{dump, interrupt, sorted_records, temp_state, wait_line, watch_with};
use syncrepl_testkit::slapd::{Bind, Options, Slapd, Transport, BASE};
use syncrepl_testkit::Realm;

const FILTER: &str = "(objectClass=inetOrgPerson)";

/// A realm, the reader's ticket in a ccache, and a slapd that takes GSSAPI binds from it.
struct Kerberized {
    realm: Realm,
    ccache: PathBuf,
    slapd: Slapd,
}

impl Kerberized {
    fn start(options: impl FnOnce(Options) -> Options) -> Kerberized {
        let realm = Realm::start().expect("realm");
        let ccache = realm.dir().join("reader.ccache");
        realm.kinit(&ccache, "reader", None).expect("kinit");
        let slapd = options(Slapd::builder().people(20).loglevel("stats").gssapi(&realm))
            .start()
            .expect("slapd");
        Kerberized {
            realm,
            ccache,
            slapd,
        }
    }

    /// The search, on `localhost` so that the service principal is `ldap@localhost`.
    fn url(&self) -> String {
        format!(
            "ldap://localhost:{}/{BASE}??sub?{FILTER}",
            self.slapd.addr().port()
        )
    }

    /// `syncrepl` with the realm's client environment: this ccache and keytab, nothing else.
    fn syncrepl(&self, ccache: Option<&Path>, keytab: Option<&Path>) -> Command {
        self.realm
            .client_command(env!("CARGO_BIN_EXE_syncrepl"), ccache, keytab)
    }

    /// `syncrepl watch --refresh-only --retry none` with the reader's ticket.
    fn refresh_only(&self, state: &Path, extra: &[&str]) -> Output {
        self.refresh_only_as(state, extra, Some(&self.ccache), None)
    }

    fn refresh_only_as(
        &self,
        state: &Path,
        extra: &[&str],
        ccache: Option<&Path>,
        keytab: Option<&Path>,
    ) -> Output {
        self.syncrepl(ccache, keytab)
            .args(["watch", &self.url(), "--state"])
            .arg(state)
            .args(["--refresh-only", "--retry", "none", "--format", "ldif"])
            .args(extra)
            .env("SYNCREPL_LOG", "info")
            .output()
            .expect("run syncrepl")
    }

    /// The mirror equals what `ldapsearch -LLL` shows the reader (over ldapi, which slapd's
    /// `security ssf=56` accepts too).
    fn assert_mirrors(&self, state: &Path) {
        let ours = sorted_records(&dump(state));
        let search = self
            .slapd
            .ldap_tool(
                "ldapsearch",
                Transport::Ldapi,
                Bind::External,
                &["-LLL", "-b", BASE, FILTER],
                None,
            )
            .expect("ldapsearch");
        assert!(search.success(), "ldapsearch: {}", search.stderr);
        let theirs = sorted_records(&search.stdout);
        assert_eq!(ours.len(), theirs.len());
        assert!(ours == theirs, "dump differs from ldapsearch");
    }

    /// How many GSSAPI binds slapd logged with this security strength.
    fn binds_with_ssf(&self, ssf: &str) -> usize {
        self.slapd
            .log()
            .matches(&format!("mech=GSSAPI bind_ssf={ssf} "))
            .count()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_fails(out: &Output, code: i32, text: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(text), "no {text:?} in: {err}");
}

#[test]
fn refresh_and_persist_with_each_security_layer() {
    let k = Kerberized::start(|o| o);
    let identity = format!("dn:{}", k.slapd.reader_dn());
    let layers = [
        ("confidentiality", vec![], "256"),
        ("integrity", vec!["-O", "maxssf=1"], "1"),
        ("none", vec!["-O", "maxssf=0"], "0"),
    ];
    for (n, (layer, props, ssf)) in layers.into_iter().enumerate() {
        let state = temp_state(&format!("gssapi-{layer}"));
        let mut extra = vec!["-Y", "GSSAPI", "--expect-identity", &identity];
        extra.extend(props);
        let before = k.binds_with_ssf(ssf);
        let mut command = k.syncrepl(Some(&k.ccache), None);
        command.env("SYNCREPL_LOG", "info");
        let (child, rx) = watch_with(command, &k.url(), &extra, &state, "text");
        assert_eq!(
            k.binds_with_ssf(ssf),
            before + 1,
            "slapd saw the {layer} layer"
        );

        let uid = format!("krb{n}");
        let dn = k.slapd.add_person(&uid);
        wait_line(&rx, &format!("add     {dn}"));
        k.slapd.replace(&dn, "sn", &["Wrapped"]);
        wait_line(&rx, "Wrapped");
        let renamed = k.slapd.rename(&dn, &format!("uid={uid}r"), None);
        wait_line(&rx, &format!("-> {renamed}"));
        k.slapd.delete(&renamed);
        wait_line(&rx, &format!("delete  {renamed}"));
        assert!(interrupt(child).success());
        k.assert_mirrors(&state);
        std::fs::remove_dir_all(&state).ok();
    }
}

#[test]
fn a_server_that_requires_confidentiality() {
    let k = Kerberized::start(|o| o.sasl_secprops("noanonymous,noplain,minssf=56"));
    let state = temp_state("gssapi-minssf");
    let out = k.refresh_only(&state, &["-Y", "GSSAPI"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("sasl_layer=confidentiality"));
    k.assert_mirrors(&state);

    let weak = temp_state("gssapi-minssf-weak");
    let out = k.refresh_only(&weak, &["-Y", "GSSAPI", "-O", "maxssf=1"]);
    assert_fails(
        &out,
        4,
        "no acceptable security layer: the server offers confidentiality",
    );
    std::fs::remove_dir_all(&state).ok();
    std::fs::remove_dir_all(&weak).ok();
}

#[test]
fn a_server_with_security_ssf_answers_a_weak_layer_with_confidentiality_required() {
    let k = Kerberized::start(|o| o.security("ssf=56"));
    let state = temp_state("gssapi-security");
    let out = k.refresh_only(&state, &["--sasl-gssapi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    k.assert_mirrors(&state);

    let weak = temp_state("gssapi-security-weak");
    let out = k.refresh_only(&weak, &["--sasl-gssapi", "-O", "maxssf=1"]);
    assert_fails(&out, 7, "confidentialityRequired (13)");
    assert!(stderr(&out).contains("-O minssf=56"), "{}", stderr(&out));
    std::fs::remove_dir_all(&state).ok();
    std::fs::remove_dir_all(&weak).ok();
}

#[test]
fn identity_and_credential_errors_are_clear() {
    let k = Kerberized::start(|o| o);
    let state = temp_state("gssapi-errors");
    let url_bind = format!("{}?bindname=GSSAPI", k.url());
    let out = k
        .syncrepl(Some(&k.ccache), None)
        .args(["watch", &url_bind, "--refresh-only", "--retry", "none"])
        .args(["--expect-identity", &format!("dn:{}", k.slapd.reader_dn())])
        .output()
        .expect("run");
    assert!(out.status.success(), "bindname=GSSAPI: {}", stderr(&out));

    let out = k.refresh_only(
        &state,
        &["-Y", "GSSAPI", "--expect-identity", "dn:cn=admin"],
    );
    assert_fails(&out, 4, "expected \"dn:cn=admin\"");

    let proxy = ["-Y", "GSSAPI", "-X", "dn:cn=admin,dc=example,dc=com"];
    let out = k.refresh_only(&state, &proxy);
    assert_fails(&out, 4, "authorization failure");

    let wrong_realm = [
        "-Y",
        "GSSAPI",
        "--sasl-principal",
        "ldap/localhost@WRONG.TEST",
    ];
    let out = k.refresh_only(&state, &wrong_realm);
    assert_fails(&out, 4, "SASL GSSAPI bind: GSSAPI:");
    assert!(stderr(&out).contains("WRONG.TEST"), "{}", stderr(&out));

    let no_ticket = k.realm.dir().join("empty.ccache");
    let out = k.refresh_only_as(&state, &["-Y", "GSSAPI"], Some(&no_ticket), None);
    assert_fails(&out, 4, "run kinit");

    let short = k.realm.dir().join("short.ccache");
    k.realm.kinit(&short, "reader", Some("1s")).expect("kinit");
    std::thread::sleep(Duration::from_millis(2100));
    let out = k.refresh_only_as(&state, &["-Y", "GSSAPI"], Some(&short), None);
    assert_fails(&out, 4, "expired");
    assert!(stderr(&out).contains("kinit"), "{}", stderr(&out));

    let keytab = k.realm.client_keytab();
    let out = k.refresh_only_as(&state, &["-Y", "GSSAPI"], Some(&short), Some(keytab));
    assert!(
        out.status.success(),
        "renewed from the keytab: {}",
        stderr(&out)
    );
    k.assert_mirrors(&state);
    std::fs::remove_dir_all(&state).ok();
}

#[test]
fn reconnecting_binds_again_and_renews_an_expired_ticket_from_the_keytab() {
    let mut k = Kerberized::start(|o| o);
    let with_keytab = k.realm.dir().join("renewing.ccache");
    let ccache_only = k.realm.dir().join("expiring.ccache");
    for ccache in [&with_keytab, &ccache_only] {
        k.realm.kinit(ccache, "reader", Some("2s")).expect("kinit");
    }
    let renewing_state = temp_state("gssapi-renew");
    let expiring_state = temp_state("gssapi-expire");
    let keytab = k.realm.client_keytab().to_path_buf();
    let (renewing, rx) = watch_with(
        k.syncrepl(Some(&with_keytab), Some(&keytab)),
        &k.url(),
        &["-Y", "GSSAPI"],
        &renewing_state,
        "text",
    );
    let (mut expiring, expiring_rx) = watch_with(
        k.syncrepl(Some(&ccache_only), None),
        &k.url(),
        &["-Y", "GSSAPI"],
        &expiring_state,
        "text",
    );
    k.slapd.add_person("before");
    wait_line(&rx, "add     uid=before,");
    wait_line(&expiring_rx, "add     uid=before,");

    // Kerberos counts whole seconds: well past the end, so that no rounding keeps it valid.
    std::thread::sleep(Duration::from_secs(4));
    let binds = k.binds_with_ssf("256");
    k.slapd.restart();
    k.slapd.add_person("after");
    wait_line(&rx, "add     uid=after,");
    assert!(
        k.binds_with_ssf("256") > binds,
        "a new GSSAPI bind after the restart"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = expiring.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expired ticket did not stop watch"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(4),
        "an expired ticket without a keytab is exit 4"
    );
    assert!(interrupt(renewing).success());
    k.assert_mirrors(&renewing_state);
    std::fs::remove_dir_all(&renewing_state).ok();
    std::fs::remove_dir_all(&expiring_state).ok();
}

#[test]
fn a_kdc_that_is_down_is_waited_for() {
    let mut k = Kerberized::start(|o| o);
    // A ticket-granting ticket only: the bind has to ask the KDC for the service ticket.
    let fresh = k.realm.dir().join("tgt-only.ccache");
    k.realm.kinit(&fresh, "reader", None).expect("kinit");
    k.realm.stop_kdc();
    let state = temp_state("gssapi-kdc-down");
    let mut child = k
        .syncrepl(Some(&fresh), None)
        .args(["watch", &k.url(), "--state"])
        .arg(&state)
        .args(["--refresh-only", "--retry", "0.3 100", "-Y", "GSSAPI"])
        .env("SYNCREPL_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "watch gave up while the KDC was down"
    );
    k.realm.start_kdc().expect("KDC back");
    let out = child.wait_with_output().expect("watch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("will retry"), "{err}");
    k.assert_mirrors(&state);
    std::fs::remove_dir_all(&state).ok();
}
