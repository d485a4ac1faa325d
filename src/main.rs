//! The `syncrepl` command: mirror an LDAP search into a state directory and print its changes.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use syncrepl::cli::{Cli, Command, DumpArgs, DumpFormat, Format, StatusArgs, WatchArgs};
use syncrepl::destination::Destination;
use syncrepl::exit;
use syncrepl::ldif::{self, LDIF_WRAP};
use syncrepl::output;
use syncrepl::progress::Progress;
use syncrepl_mio::{Outcome, StopHandle};
use syncrepl_proto::EntryUuid;
use syncrepl_state::{Change, Consumer, ConsumerError, Entries, Entry, Mirror};

fn main() -> ExitCode {
    let cli = Cli::parse();
    syncrepl::logging::init();
    let code = match cli.command {
        Command::Watch(args) => watch(&args),
        Command::Dump(args) => dump(&args),
        Command::Status(args) => status(&args),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn fail(message: impl std::fmt::Display, code: i32) -> i32 {
    eprintln!("syncrepl: {message}");
    code
}

/// Writes the changes in the chosen format; a change counts as taken once its destination took
/// it (see [`Destination::commit`]).
struct Printer {
    format: Format,
    out: Destination,
    progress: Progress,
    refreshed: bool,
    changes: u64,
}

/// A write to the output failed: the reader went away or the disk is full.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the changes to {target}: {source}")]
struct OutputError {
    target: String,
    source: io::Error,
}

impl Printer {
    fn fail(&self, source: io::Error) -> ConsumerError {
        Box::new(OutputError {
            target: self.out.name().to_owned(),
            source,
        })
    }
}

impl Consumer for Printer {
    fn on_change(&mut self, change: &Change) -> Result<(), ConsumerError> {
        if !self.refreshed {
            self.progress.entry(Instant::now, &mut io::stderr());
        }
        self.changes += 1;
        let format = self.format;
        output::write_change(self.out.writer(), format, change).map_err(|e| self.fail(e))
    }

    fn flush(&mut self) -> Result<(), ConsumerError> {
        self.out.commit().map_err(|e| self.fail(e))
    }

    fn on_refresh_done(&mut self, entries: &Entries) -> Result<(), ConsumerError> {
        let now = Instant::now();
        let elapsed = self.progress.elapsed(now);
        self.progress.finish(&mut io::stderr());
        if !self.refreshed {
            eprintln!(
                "syncrepl: refresh done: {} entries mirrored, {} changes, {:.2} s",
                entries.len(),
                self.changes,
                elapsed.as_secs_f64()
            );
        }
        self.refreshed = true;
        Ok(())
    }
}

/// Stops the run on the first SIGINT or SIGTERM; exits at once on a second SIGINT.
fn install_signals(stop: &StopHandle) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let stop = stop.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if stop.is_stopped() && signal == SIGINT {
                eprintln!("syncrepl: interrupted again, exiting now (the state stays consistent)");
                std::process::exit(exit::INTERRUPTED);
            }
            eprintln!("syncrepl: stopping (Ctrl-C again to exit at once)");
            stop.stop();
        }
    });
    Ok(())
}

fn watch(args: &WatchArgs) -> i32 {
    let options = match args.sync.sync_options() {
        Ok(o) => o,
        Err(e) => return fail(e, exit::USAGE),
    };
    let fsync = args.sync.open_options().fsync;
    let mut mirror = match args.sync.open_mirror(&options) {
        Ok(m) => m,
        Err(e) => return fail(e, exit::STATE),
    };
    let stop = StopHandle::new();
    if let Err(e) = install_signals(&stop) {
        return fail(format!("cannot handle signals: {e}"), exit::FAILURE);
    }
    let out = match &args.output {
        None => Destination::stdout(fsync, stop.clone()),
        Some(path) => Destination::file(path, fsync, stop.clone()),
    };
    let out = match out {
        Ok(out) => out,
        Err(e) => return fail(format!("cannot open the output: {e}"), exit::USAGE),
    };
    let mut printer = Printer {
        format: args.format,
        out,
        progress: Progress::on_stderr(Instant::now()),
        refreshed: false,
        changes: 0,
    };
    let result = syncrepl::run(&options, &mut mirror, &mut printer, &stop);
    printer.progress.finish(&mut io::stderr());
    if let Err(e) = mirror.sync().and_then(|()| mirror.close()) {
        return fail(e, exit::STATE);
    }
    // The process exits now: freeing every entry one by one would only cost time.
    std::mem::forget(mirror);
    match result {
        Ok(Outcome::RefreshDone) | Ok(Outcome::Stopped) => exit::OK,
        Err(e) => {
            let code = exit::code(&e);
            eprintln!("syncrepl: {e}");
            if let Some(hint) = exit::hint(&e) {
                eprintln!("syncrepl: hint: {hint}");
            }
            code
        }
    }
}

fn load(state: &Path) -> Result<Mirror, i32> {
    Mirror::load(state).map_err(|e| fail(e, exit::STATE))
}

fn dump(args: &DumpArgs) -> i32 {
    let mirror = match load(&args.state) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let mut entries: Vec<(&EntryUuid, &Entry)> = mirror.entries().iter().collect();
    entries.sort_by(|a, b| a.1.dn.cmp(&b.1.dn));
    let mut out = BufWriter::new(io::stdout().lock());
    let result = entries
        .iter()
        .try_for_each(|(uuid, entry)| match args.format {
            DumpFormat::Ldif => {
                ldif::write_entry(&mut out, &entry.dn, &entry.attributes, LDIF_WRAP)
            }
            DumpFormat::Json => {
                let value = serde_json::json!({
                    "dn": entry.dn,
                    "entryUUID": uuid.to_string(),
                    "attributes": output::json_attributes(&entry.attributes),
                });
                serde_json::to_writer(&mut out, &value)
                    .map_err(io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
            }
        });
    let code = match result.and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => fail(e, exit::FAILURE),
    };
    drop(entries);
    // The process exits now: freeing every entry one by one would only cost time.
    std::mem::forget(mirror);
    code
}

fn status(args: &StatusArgs) -> i32 {
    let mirror = match load(&args.state) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let s = mirror.status();
    let last_change = if s.last_change == 0 {
        "never".to_owned()
    } else {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!(
            "{} s ago (unix time {})",
            now.saturating_sub(s.last_change),
            s.last_change
        )
    };
    println!("state:        {}", args.state.display());
    println!("search:       {}", s.search);
    println!(
        "server:       {}",
        if s.server.is_empty() { "-" } else { &s.server }
    );
    println!(
        "cookie:       {}",
        s.cookie
            .as_ref()
            .map_or_else(|| "none".to_owned(), |c| c.to_string())
    );
    if let Some(raw) = s
        .server_cookie
        .as_ref()
        .filter(|raw| Some(*raw) != s.cookie.as_ref())
    {
        println!("server sent:  {raw}");
    }
    if s.needs_reload {
        println!("next sync:    full reload (the server required a refresh)");
    }
    println!("entries:      {}", s.entries);
    println!("next seq:     {}", s.next_seq);
    println!("acknowledged: {}", s.acked);
    if s.undelivered > 0 {
        println!(
            "undelivered:  {} (handed out again first by the next watch)",
            s.undelivered
        );
    }
    println!("last change:  {last_change}");
    println!("store size:   {} bytes", s.store_bytes);
    std::mem::forget(mirror);
    exit::OK
}
