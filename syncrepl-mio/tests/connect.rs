//! Transports, TLS and binds against a real slapd.

use std::time::Duration;

use syncrepl_mio::{
    run, ConnectOptions, Connection, Credentials, Endpoint, Error, LdapUrl, Outcome, RetrySchedule,
    RunError, StopHandle, SyncOptions, SyncSink,
};
use syncrepl_proto::{ContentEvent, Cookie, ResultCode, SyncMode, SyncRequest};
use syncrepl_testkit::proxy::{Action, Proxy};
use syncrepl_testkit::slapd::{Options, Slapd, BASE, READER_DN, READER_PW};

fn endpoint(url: &str) -> Endpoint {
    url.parse::<LdapUrl>().expect("valid URL").endpoint
}

/// Counts entries and remembers the cookie.
#[derive(Debug, Default)]
struct Counter {
    entries: usize,
    cookie: Option<Cookie>,
    complete: bool,
}

impl SyncSink for Counter {
    type Error = std::io::Error;
    fn cookie(&self) -> Option<Cookie> {
        self.cookie.clone()
    }
    fn on_content(&mut self, event: ContentEvent) -> Result<(), Self::Error> {
        match event {
            ContentEvent::Entry(_) => self.entries += 1,
            ContentEvent::RefreshComplete { cookie, .. } => {
                self.cookie = cookie;
                self.complete = true;
            }
            _ => {}
        }
        Ok(())
    }
    fn on_refresh_required(&mut self) -> Result<(), Self::Error> {
        self.cookie = None;
        Ok(())
    }
}

fn refresh(connect: ConnectOptions) -> Result<Counter, Error> {
    let runtime = |e| match e {
        RunError::Runtime(e) => e,
        RunError::Sink(e) => panic!("the counter does not fail: {e}"),
    };
    let mut request = SyncRequest::new(BASE, SyncMode::RefreshOnly);
    request.filter = "(objectClass=inetOrgPerson)".into();
    let mut options = SyncOptions::new(connect, request);
    options.retry = RetrySchedule::never();
    let mut sink = Counter::default();
    let outcome = run(&options, &mut sink, &StopHandle::new()).map_err(runtime)?;
    assert_eq!(outcome, Outcome::RefreshDone);
    Ok(sink)
}

fn reader(mut connect: ConnectOptions) -> ConnectOptions {
    connect.credentials = Credentials::Simple {
        dn: READER_DN.into(),
        password: READER_PW.into(),
    };
    connect
}

#[test]
fn every_transport_and_bind() {
    let slapd = Slapd::start(Options::default());
    let anonymous = refresh(ConnectOptions::new(endpoint(&slapd.ldap_url()))).expect("anonymous");
    assert_eq!(anonymous.entries, 50);
    assert!(anonymous.complete && anonymous.cookie.is_some());

    let ldaps = ConnectOptions::new(endpoint(&slapd.ldaps_url())).with_ca_file(slapd.ca_file());
    assert_eq!(
        refresh(reader(ldaps)).expect("ldaps + simple bind").entries,
        50
    );

    let mut starttls =
        ConnectOptions::new(endpoint(&slapd.ldap_url())).with_ca_file(slapd.ca_file());
    starttls.start_tls = true;
    starttls.expect_identity = Some(format!("dn:{READER_DN}"));
    assert_eq!(
        refresh(reader(starttls))
            .expect("StartTLS + simple bind")
            .entries,
        50
    );

    let mut ldapi = ConnectOptions::new(endpoint(&slapd.ldapi_url()));
    ldapi.credentials = Credentials::SaslExternal { authz_id: None };
    ldapi.expect_identity = Some(format!("dn:{READER_DN}"));
    assert_eq!(refresh(ldapi).expect("ldapi + SASL EXTERNAL").entries, 50);

    let mut tls_external =
        ConnectOptions::new(endpoint(&slapd.ldaps_url())).with_ca_file(slapd.ca_file());
    tls_external.tls.client_cert = Some(slapd.dir().join("client.pem"));
    tls_external.tls.client_key = Some(slapd.dir().join("client.key"));
    tls_external.credentials = Credentials::SaslExternal { authz_id: None };
    tls_external.expect_identity = Some(format!("dn:{READER_DN}"));
    assert_eq!(
        refresh(tls_external)
            .expect("TLS client certificate + SASL EXTERNAL")
            .entries,
        50
    );
}

#[test]
fn failures_are_clear_and_final() {
    let slapd = Slapd::start(Options::default());
    let stop = StopHandle::new();

    let mut bad_password =
        ConnectOptions::new(endpoint(&slapd.ldaps_url())).with_ca_file(slapd.ca_file());
    bad_password.credentials = Credentials::Simple {
        dn: READER_DN.into(),
        password: "wrong".into(),
    };
    let err = refresh(bad_password).expect_err("invalid credentials");
    assert!(
        matches!(&err, Error::Bind { result, .. } if result.code == ResultCode::INVALID_CREDENTIALS),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        format!("invalidCredentials (49) binding as {READER_DN}")
    );

    let cleartext = reader(ConnectOptions::new(endpoint(&slapd.ldap_url())));
    let err = Connection::open(&cleartext, &stop).expect_err("refused");
    assert!(matches!(err, Error::CleartextPassword(_)), "{err}");
    let mut allowed = cleartext.clone();
    allowed.allow_cleartext_password = true;
    assert_eq!(
        refresh(allowed).expect("cleartext when allowed").entries,
        50
    );

    let wrong_ca = ConnectOptions::new(endpoint(&slapd.ldaps_url()))
        .with_ca_file(slapd.dir().join("other-ca.pem"));
    let err = refresh(wrong_ca).expect_err("untrusted certificate");
    assert!(matches!(err, Error::Tls(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    let mut wrong_identity =
        reader(ConnectOptions::new(endpoint(&slapd.ldaps_url())).with_ca_file(slapd.ca_file()));
    wrong_identity.expect_identity = Some("dn:cn=someone else".into());
    let err = Connection::open(&wrong_identity, &stop).expect_err("identity mismatch");
    assert!(matches!(err, Error::IdentityMismatch { .. }), "{err}");

    let mut missing_base = SyncOptions::new(
        ConnectOptions::new(endpoint(&slapd.ldap_url())),
        SyncRequest::new("ou=nowhere,dc=example,dc=com", SyncMode::RefreshOnly),
    );
    missing_base.retry = RetrySchedule::never();
    let err = run(&missing_base, &mut Counter::default(), &stop).expect_err("no such object");
    assert!(
        matches!(&err, RunError::Runtime(Error::Search(r)) if r.code == ResultCode::NO_SUCH_OBJECT),
        "{err}"
    );

    let mut closed = ConnectOptions::new(Endpoint::Ldap {
        host: "127.0.0.1".into(),
        port: 1,
    });
    closed.connect_timeout = Duration::from_secs(2);
    let err = refresh(closed).expect_err("connection refused");
    assert!(err.is_retryable(), "{err}");
}

#[test]
fn starttls_refused_never_falls_back() {
    let slapd = Slapd::start(Options::default());
    // The proxy answers StartTLS (the first response) with unwillingToPerform (53).
    let proxy = Proxy::start(
        slapd.addr(),
        Box::new(|_, index, _| match index {
            0 => Action::Replace(vec![
                0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x35, 0x04, 0x00, 0x04, 0x00,
            ]),
            _ => Action::Pass,
        }),
    );
    let mut options = reader(
        ConnectOptions::new(endpoint(&format!("ldap://{}", proxy.addr())))
            .with_ca_file(slapd.ca_file()),
    );
    options.start_tls = true;
    let err = Connection::open(&options, &StopHandle::new()).expect_err("refused");
    assert!(
        matches!(&err, Error::StartTlsRefused(r) if r.code == ResultCode::UNWILLING_TO_PERFORM),
        "{err}"
    );

    let mut ldaps = ConnectOptions::new(endpoint(&slapd.ldaps_url())).with_ca_file(slapd.ca_file());
    ldaps.start_tls = true;
    let err = Connection::open(&ldaps, &StopHandle::new()).expect_err("config error");
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[test]
fn server_without_syncprov() {
    let slapd = Slapd::start(Options {
        syncprov: false,
        ..Options::default()
    });
    let err = refresh(ConnectOptions::new(endpoint(&slapd.ldap_url()))).expect_err("no syncprov");
    assert!(matches!(err, Error::NoSyncProvider(_)), "{err}");
    assert!(err.to_string().contains("no syncprov?"), "{err}");
    assert!(!err.is_retryable());
}
