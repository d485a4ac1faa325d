//! Certificates for the test servers, made in process with rcgen (ECDSA P-256): for slapd a CA, a
//! server certificate for `localhost`, `127.0.0.1` and the machine's host name, a client
//! certificate for SASL EXTERNAL, and a second, unrelated CA that tests can use to check that an
//! untrusted server is refused; for other servers a CA and one server certificate.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::Error;

/// File names inside the server's directory.
pub(crate) const CA_PEM: &str = "ca.pem";
pub(crate) const SERVER_PEM: &str = "server.pem";
pub(crate) const SERVER_KEY: &str = "server.key";
pub(crate) const CLIENT_PEM: &str = "client.pem";
pub(crate) const CLIENT_KEY: &str = "client.key";
pub(crate) const OTHER_CA_PEM: &str = "other-ca.pem";

/// The client certificate's subject as slapd writes it in LDAP string form (RFC 4514: the last
/// RDN of the certificate's sequence comes first).
pub(crate) const CLIENT_SUBJECT: &str = "cn=reader,o=syncrepl tests";

fn name(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (kind, value) in parts {
        dn.push(kind.clone(), *value);
    }
    dn
}

fn ca(common_name: &str) -> Result<(String, Issuer<'static, KeyPair>), rcgen::Error> {
    let mut params = CertificateParams::new(Vec::new())?;
    params.distinguished_name = name(&[
        (DnType::OrganizationName, "syncrepl tests"),
        (DnType::CommonName, common_name),
    ]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    names: Vec<String>,
    subject: DistinguishedName,
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A CA and one server certificate it signed, as PEM.
pub(crate) struct ServerTls {
    /// The CA's certificate, for clients to trust.
    pub(crate) ca_pem: String,
    /// The server's certificate.
    pub(crate) cert_pem: String,
    /// The server certificate's private key (PKCS#8).
    pub(crate) key_pem: String,
}

/// A new CA named `ca_name` and a server certificate it signed for `names` (host names or IP
/// addresses; the first is also its common name).
pub(crate) fn server_tls(ca_name: &str, names: Vec<String>) -> Result<ServerTls, Error> {
    let made = (|| -> Result<ServerTls, rcgen::Error> {
        let (ca_pem, issuer) = ca(ca_name)?;
        let common_name = names.first().cloned().unwrap_or_default();
        let subject = name(&[
            (DnType::OrganizationName, "syncrepl tests"),
            (DnType::CommonName, &common_name),
        ]);
        let (cert_pem, key_pem) =
            leaf(&issuer, names, subject, ExtendedKeyUsagePurpose::ServerAuth)?;
        Ok(ServerTls {
            ca_pem,
            cert_pem,
            key_pem,
        })
    })();
    made.map_err(|e| Error::Certificate(e.to_string()))
}

/// Writes every certificate and key into `dir`.
pub(crate) fn write_all(dir: &Path) -> Result<(), Error> {
    let made = (|| -> Result<Vec<(&str, String)>, rcgen::Error> {
        let (ca_pem, issuer) = ca("syncrepl test CA")?;
        // libldap checks `localhost` against the machine's own name: name it too.
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let host = host.trim();
            let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
            if !host.is_empty() && host != "localhost" && host.chars().all(plain) {
                names.push(host.to_owned());
            }
        }
        let (server_pem, server_key) = leaf(
            &issuer,
            names,
            name(&[
                (DnType::OrganizationName, "syncrepl tests"),
                (DnType::CommonName, "localhost"),
            ]),
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_pem, client_key) = leaf(
            &issuer,
            Vec::new(),
            name(&[
                (DnType::OrganizationName, "syncrepl tests"),
                (DnType::CommonName, "reader"),
            ]),
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let (other_ca_pem, _) = ca("another CA, trusted by nobody")?;
        Ok(vec![
            (CA_PEM, ca_pem),
            (SERVER_PEM, server_pem),
            (SERVER_KEY, server_key),
            (CLIENT_PEM, client_pem),
            (CLIENT_KEY, client_key),
            (OTHER_CA_PEM, other_ca_pem),
        ])
    })()
    .map_err(|e| Error::Certificate(e.to_string()))?;
    for (file, pem) in made {
        let path = dir.join(file);
        std::fs::write(&path, pem)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    }
    Ok(())
}
