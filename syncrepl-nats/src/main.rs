//! `syncrepl-nats`: publish a mirror's changes to NATS JetStream (`publish`), and rebuild or
//! follow the directory from the stream (`dump`).

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use syncrepl::cli::{DumpFormat, SyncArgs};
use syncrepl::exit;
use syncrepl::mio::{Outcome, StopHandle};
use syncrepl_nats::{rebuild, Error, NatsArgs, Publisher, Record, StreamSettings, Subjects};

/// Every message's body and headers are allocated on the sync thread and freed on the runtime's
/// after the write: mimalloc frees across threads without glibc's arena locks and consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Fan-out of an LDAP directory's changes through NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "syncrepl-nats", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mirror a search as `syncrepl watch` does and publish each change to a JetStream stream,
    /// exactly once: a change counts as delivered once JetStream has acknowledged it.
    Publish(Box<PublishArgs>),
    /// Rebuild the directory from the stream alone and print it as `syncrepl dump` does; with
    /// `--follow`, then print the changes published after it as JSON lines.
    Dump(DumpArgs),
}

/// Which stream, under which subjects.
#[derive(Debug, clap::Args)]
struct StreamArgs {
    /// The JetStream stream.
    #[arg(long, default_value = "SYNCREPL")]
    stream: String,
    /// The subject prefix: entries go to `PREFIX.entry.<entryUUID>`, markers to `PREFIX.marker`.
    #[arg(long = "subject", value_name = "PREFIX", default_value = "ldap")]
    subject: String,
}

#[derive(Debug, clap::Args)]
struct PublishArgs {
    #[command(flatten)]
    sync: SyncArgs,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    stream: StreamArgs,
    /// Copies of the stream in a JetStream cluster, when it is created.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Seconds the stream remembers message ids to drop republished changes, when it is created.
    #[arg(long, default_value_t = 600)]
    duplicate_window: u64,
    /// Messages kept per entry when the stream is created: 1 keeps the current state of each
    /// entry (a compacted copy), 0 every change.
    #[arg(long, default_value_t = 1)]
    keep: i64,
    /// Publishes waiting for their acknowledgement at most.
    #[arg(long, default_value_t = 1024)]
    window: usize,
}

#[derive(Debug, clap::Args)]
struct DumpArgs {
    /// The NATS server(s) to read from.
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    stream: StreamArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DumpFormat::Ldif)]
    format: DumpFormat,
    /// After the content, print each change published later (JSON lines), until interrupted.
    #[arg(long)]
    follow: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    syncrepl::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return code(fail(format!("cannot start the async runtime: {e}"), 1)),
    };
    code(match cli.command {
        Command::Publish(args) => publish(&args, &runtime),
        Command::Dump(args) => runtime.block_on(dump(&args)),
    })
}

fn code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn fail(e: impl std::fmt::Display, code: i32) -> i32 {
    eprintln!("syncrepl-nats: {e}");
    code
}

fn subjects(args: &StreamArgs) -> Result<Subjects, i32> {
    Subjects::new(&args.subject).map_err(|e| fail(e, exit::USAGE))
}

/// Stops on the first SIGINT or SIGTERM.
fn install_signals(stop: &StopHandle) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let stop = stop.clone();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            eprintln!("syncrepl-nats: stopping");
            stop.stop();
        }
    });
    Ok(())
}

/// The publisher's loop: one sync run per connection to NATS; when publishing fails, the run
/// stops with nothing unacknowledged committed, and starts again after the LDAP retry schedule's
/// delay, handing out again what JetStream had not acknowledged.
fn publish(args: &PublishArgs, runtime: &tokio::runtime::Runtime) -> i32 {
    let options = match args.sync.sync_options() {
        Ok(o) => o,
        Err(e) => return fail(e, exit::USAGE),
    };
    let Some(state) = args.sync.state.clone() else {
        return fail(
            "publish needs --state: the mirror's identity and acknowledgements make it exactly once",
            exit::USAGE,
        );
    };
    let subjects = match subjects(&args.stream) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let settings = StreamSettings {
        name: args.stream.stream.clone(),
        replicas: args.replicas,
        duplicate_window: Duration::from_secs(args.duplicate_window),
        keep_per_entry: args.keep,
    };
    let stop = StopHandle::new();
    if let Err(e) = install_signals(&stop) {
        return fail(format!("cannot handle signals: {e}"), exit::FAILURE);
    }
    let mut attempt = 0;
    loop {
        if stop.is_stopped() {
            return exit::OK;
        }
        let prepared = runtime.block_on(async {
            let client = args.nats.connect().await?;
            let js = async_nats::jetstream::new(client.clone());
            settings.ensure(&js, &subjects).await?;
            let inbox = syncrepl_nats::acks::Inbox::subscribe(&client).await?;
            Ok::<_, Error>((client, inbox))
        });
        let (client, inbox) = match prepared {
            Ok(prepared) => prepared,
            Err(e) if e.is_retryable() => {
                match wait_to_retry(&options.retry, &mut attempt, &stop, &e) {
                    Some(code) => return code,
                    None => continue,
                }
            }
            Err(e) => return fail(e, exit::USAGE),
        };
        let mut mirror = match args.sync.open_mirror(&options) {
            Ok(m) => m,
            Err(e) => return fail(e, exit::STATE),
        };
        let identity = match syncrepl_nats::publisher::identity(&state, &mirror) {
            Ok(id) => id,
            Err(e) => return fail(e, exit::STATE),
        };
        let mut publisher = Publisher::new(
            runtime.handle(),
            client,
            inbox,
            subjects.clone(),
            identity,
            args.window,
        );
        let result = syncrepl::run(&options, &mut mirror, &mut publisher, &stop);
        let stats = publisher.stats();
        tracing::info!(
            stored = stats.stored,
            duplicates = stats.duplicates,
            "published"
        );
        if let Err(e) = mirror.sync().and_then(|()| mirror.close()) {
            return fail(e, exit::STATE);
        }
        drop(mirror);
        match result {
            Ok(Outcome::RefreshDone) | Ok(Outcome::Stopped) => return exit::OK,
            Err(e @ syncrepl::Error::Consumer { .. }) if publisher.failed() => {
                if stats.stored + stats.duplicates > 0 {
                    attempt = 0;
                }
                if let Some(code) = wait_to_retry(&options.retry, &mut attempt, &stop, &e) {
                    return code;
                }
            }
            Err(e) => {
                let code = exit::code(&e);
                eprintln!("syncrepl-nats: {e}");
                if let Some(hint) = exit::hint(&e) {
                    eprintln!("syncrepl-nats: hint: {hint}");
                }
                return code;
            }
        }
    }
}

/// Waits as the retry schedule says after `error`; `Some(exit code)` when it says to give up
/// or the run was stopped meanwhile.
fn wait_to_retry(
    retry: &syncrepl::mio::RetrySchedule,
    attempt: &mut u32,
    stop: &StopHandle,
    error: &dyn std::fmt::Display,
) -> Option<i32> {
    let Some(delay) = retry.delay(*attempt) else {
        return Some(fail(error, exit::CONSUMER));
    };
    *attempt += 1;
    tracing::warn!(%error, retry_in = ?delay, attempt = *attempt, "NATS unavailable; will retry");
    if stop.sleep(delay) {
        return Some(exit::OK);
    }
    None
}

async fn dump(args: &DumpArgs) -> i32 {
    let subjects = match subjects(&args.stream) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let client = match args.nats.connect().await {
        Ok(c) => c,
        Err(e) => return fail(e, exit::CONNECTION),
    };
    let js = async_nats::jetstream::new(client);
    // A cluster that just lost a node answers consumer requests only once it has elected the
    // stream's new leader: retry for a while.
    let mut attempt = 0;
    let (rebuilt, mut reader) = loop {
        match rebuild(&js, &args.stream.stream, subjects.clone()).await {
            Ok(r) => break r,
            Err(e) if e.is_retryable() && attempt < 20 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "reading the stream failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return fail(e, exit::FAILURE),
        }
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let written = match args.format {
        DumpFormat::Ldif => rebuilt.write_ldif(&mut out),
        DumpFormat::Json => rebuilt.write_json(&mut out),
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        return broken_pipe_is_ok(e);
    }
    eprintln!(
        "syncrepl-nats: {} entries, last change {}",
        rebuilt.entries.len(),
        rebuilt.last_seq
    );
    if !args.follow {
        return exit::OK;
    }
    loop {
        let record = tokio::select! {
            next = reader.next() => next,
            _ = tokio::signal::ctrl_c() => return exit::OK,
        };
        let line = match record {
            Ok((Record::Change { body, .. }, _)) => body.to_string(),
            Ok((Record::Marker(body), _)) => {
                eprintln!("syncrepl-nats: marker {body}");
                continue;
            }
            Err(e) => return fail(e, exit::FAILURE),
        };
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            return broken_pipe_is_ok(e);
        }
    }
}

fn broken_pipe_is_ok(e: io::Error) -> i32 {
    if e.kind() == io::ErrorKind::BrokenPipe {
        exit::OK
    } else {
        fail(e, exit::FAILURE)
    }
}
