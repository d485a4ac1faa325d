//! The exit codes of the `syncrepl` command, one per kind of failure, so scripts can react.

use syncrepl_mio::Error as RuntimeError;
use syncrepl_proto::ResultCode;

use crate::Error;

/// Everything went well (including a clean stop on SIGINT or SIGTERM).
pub const OK: i32 = 0;
/// Generic failure not covered below.
pub const FAILURE: i32 = 1;
/// Bad arguments or a malformed URL (clap also exits with 2).
pub const USAGE: i32 = 2;
/// The server could not be reached, or TLS failed, and retrying did not help.
pub const CONNECTION: i32 = 3;
/// The bind failed (invalid credentials, identity mismatch, a password refused over cleartext).
pub const AUTHENTICATION: i32 = 4;
/// The server broke the protocol.
pub const PROTOCOL: i32 = 5;
/// The server requires a full refresh and `--no-reload` was given.
pub const REFRESH_REQUIRED: i32 = 6;
/// The search failed: no such base, insufficient access, or no sync provider on the server.
pub const SEARCH: i32 = 7;
/// The state directory is locked, belongs to another search, is damaged, or could not be
/// written (disk full, failed fsync).
pub const STATE: i32 = 8;
/// The consumer of the changes failed: stdout or `--output` could not be written (a reader that
/// went away, a full disk). Nothing past the last change written was committed; the next run
/// writes again from there.
pub const CONSUMER: i32 = 9;
/// A second SIGINT: exited at once (the state is still consistent).
pub const INTERRUPTED: i32 = 130;

/// The exit code for an error of a run.
pub fn code(error: &Error) -> i32 {
    match error {
        Error::Runtime(e) => runtime_code(e),
        Error::State(_) => STATE,
        Error::Consumer { .. } => CONSUMER,
    }
}

/// The exit code for an error of the runtime.
pub fn runtime_code(error: &RuntimeError) -> i32 {
    use RuntimeError as Error;
    match error {
        Error::Url(_) | Error::Config(_) => USAGE,
        Error::Resolve { .. }
        | Error::Connect { .. }
        | Error::ConnectUnix { .. }
        | Error::Io(_)
        | Error::ConnectionClosed
        | Error::TlsConfig(_)
        | Error::Tls(_)
        | Error::StartTlsRefused(_)
        | Error::Disconnected(_)
        | Error::Timeout(_) => CONNECTION,
        Error::CleartextPassword(_)
        | Error::Bind { .. }
        | Error::IdentityMismatch { .. }
        | Error::Sasl { .. } => AUTHENTICATION,
        Error::NoSyncProvider(_)
        | Error::ActiveDirectory(_)
        | Error::NoSyncControl
        | Error::NoNamingContext { .. }
        | Error::Search(_) => SEARCH,
        Error::RefreshRequired => REFRESH_REQUIRED,
        Error::Protocol(syncrepl_proto::Error::Timeout { .. }) => CONNECTION,
        Error::Protocol(_) | Error::SecurityLayer(_) => PROTOCOL,
        _ => FAILURE,
    }
}

/// A hint that names the likely fix, printed after the error.
pub fn hint(error: &Error) -> Option<&'static str> {
    let error = match error {
        crate::Error::Runtime(e) => e,
        crate::Error::Consumer { .. } => {
            return Some("the changes not written are written again by the next run")
        }
        _ => return None,
    };
    use RuntimeError as Error;
    Some(match error {
        Error::Bind { result, .. } if result.code == ResultCode::INVALID_CREDENTIALS => {
            "check the bind DN and the password file or variable"
        }
        Error::CleartextPassword(_) => {
            "use ldaps://, --starttls or ldapi://, or pass --allow-cleartext-password"
        }
        Error::NoSyncProvider(_) => {
            "enable the syncprov overlay on this database (OpenLDAP) or the Content Synchronization plugin (389 DS)"
        }
        Error::Search(result) if result.code == ResultCode::NO_SUCH_OBJECT => {
            "the search base does not exist on this server; check the URL's DN"
        }
        Error::Search(result) if result.code == ResultCode::INSUFFICIENT_ACCESS_RIGHTS => {
            "the bind identity may not read this part of the directory (Active Directory's DirSync needs the \"Replicating Directory Changes\" right, or --dirsync-object-security)"
        }
        Error::Search(result) if result.code == ResultCode::CONFIDENTIALITY_REQUIRED => {
            "the server requires a stronger connection: use TLS, or a SASL layer with -O minssf=56"
        }
        Error::ActiveDirectory(_) => "leave out --dialect rfc4533, or pass --dialect ad",
        Error::NoNamingContext { .. } => {
            "DirSync runs from a naming context: use a base at or below one of the server's naming contexts"
        }
        Error::Tls(_) => "check --ca-file and that the certificate names this host",
        Error::Connect { .. } | Error::ConnectUnix { .. } => "is the server running and reachable?",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncrepl_proto::LdapResult;
    use RuntimeError as Error;

    fn result(code: ResultCode) -> LdapResult {
        LdapResult {
            code,
            matched_dn: String::new(),
            diagnostic_message: String::new(),
            referral: Vec::new(),
        }
    }

    #[test]
    fn distinct_codes() {
        let bind = Error::Bind {
            dn: "cn=reader,dc=example,dc=com".into(),
            result: result(ResultCode::INVALID_CREDENTIALS),
        };
        assert_eq!(runtime_code(&bind), AUTHENTICATION);
        assert_eq!(
            bind.to_string(),
            "invalidCredentials (49) binding as cn=reader,dc=example,dc=com"
        );
        let bind = crate::Error::Runtime(bind);
        assert!(hint(&bind).is_some());
        assert_eq!(code(&bind), AUTHENTICATION);
        let no_sync = Error::NoSyncProvider(result(ResultCode::UNAVAILABLE_CRITICAL_EXTENSION));
        assert_eq!(runtime_code(&no_sync), SEARCH);
        assert!(no_sync
            .to_string()
            .starts_with("server does not support LDAP Content Synchronization (no syncprov?)"));
        assert_eq!(runtime_code(&Error::RefreshRequired), REFRESH_REQUIRED);
        assert_eq!(runtime_code(&Error::ConnectionClosed), CONNECTION);
        let consumer = crate::Error::Consumer {
            seq: Some(3),
            source: "closed".into(),
        };
        assert_eq!(code(&consumer), CONSUMER);
        let codes = [
            OK,
            FAILURE,
            USAGE,
            CONNECTION,
            AUTHENTICATION,
            PROTOCOL,
            REFRESH_REQUIRED,
            SEARCH,
            STATE,
            CONSUMER,
            INTERRUPTED,
        ];
        let mut sorted = codes.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
    }
}
