//! Connecting to NATS: the server URLs, authentication (user and password, token, credentials
//! file) and TLS through rustls with verification on.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectOptions};

use crate::Error;

/// How to reach NATS, as command-line options.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// The NATS server(s): `nats://HOST:PORT`, several separated by commas (a cluster); `tls://`
    /// requires TLS.
    #[arg(
        long = "nats",
        value_name = "URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// The user name for user/password authentication.
    #[arg(long = "nats-user", requires = "nats_password_file")]
    pub nats_user: Option<String>,
    /// A file whose first line is the password of `--nats-user`.
    #[arg(
        long = "nats-password-file",
        value_name = "FILE",
        requires = "nats_user"
    )]
    pub nats_password_file: Option<PathBuf>,
    /// A file whose first line is the authentication token.
    #[arg(
        long = "nats-token-file",
        value_name = "FILE",
        conflicts_with = "nats_user"
    )]
    pub nats_token_file: Option<PathBuf>,
    /// A NATS credentials file (JWT and NKey seed).
    #[arg(long = "nats-creds", value_name = "FILE", conflicts_with_all = ["nats_user", "nats_token_file"])]
    pub nats_creds: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for TLS (implies TLS).
    #[arg(long = "nats-ca-file", value_name = "FILE")]
    pub nats_ca_file: Option<PathBuf>,
    /// Require TLS.
    #[arg(long = "nats-tls")]
    pub nats_tls: bool,
}

impl NatsArgs {
    /// Options for `url` with no authentication.
    pub fn new(url: impl Into<String>) -> NatsArgs {
        NatsArgs {
            nats_url: url.into(),
            nats_user: None,
            nats_password_file: None,
            nats_token_file: None,
            nats_creds: None,
            nats_ca_file: None,
            nats_tls: false,
        }
    }

    /// Connects, failing at once if no server answers (the caller retries on its schedule);
    /// once connected, the client reconnects by itself.
    pub async fn connect(&self) -> Result<Client, Error> {
        let mut options = match &self.nats_creds {
            Some(path) => ConnectOptions::new()
                .credentials_file(path)
                .await
                .map_err(|e| Error::Options(format!("{}: {e}", path.display())))?,
            None => ConnectOptions::new(),
        };
        if let (Some(user), Some(file)) = (&self.nats_user, &self.nats_password_file) {
            options = options.user_and_password(user.clone(), first_line(file)?);
        }
        if let Some(file) = &self.nats_token_file {
            options = options.token(first_line(file)?);
        }
        if let Some(ca) = &self.nats_ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if self.nats_tls {
            options = options.require_tls(true);
        }
        let servers: Vec<&str> = self
            .nats_url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        options
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .connect(servers)
            .await
            .map_err(|e| Error::Connect(format!("{}: {e}", self.nats_url)))
    }
}

fn first_line(path: &PathBuf) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().next().unwrap_or_default().to_owned())
        .map_err(|e| Error::Options(format!("{}: {e}", path.display())))
}
