//! The progress line `syncrepl watch` keeps on stderr while a refresh runs on a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraws `refreshing: N entries, R/s, T s` at most a few times a second; silent when stderr is not
/// a terminal, so pipes and logs stay clean.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    started: Instant,
    last_draw: Option<Instant>,
    entries: u64,
    shown: bool,
}

const REDRAW_EVERY: Duration = Duration::from_millis(200);

impl Progress {
    /// A progress line on stderr if stderr is a terminal.
    pub fn on_stderr(now: Instant) -> Progress {
        Progress::new(std::io::stderr().is_terminal(), now)
    }

    /// A progress line that draws only if `enabled`.
    pub fn new(enabled: bool, now: Instant) -> Progress {
        Progress {
            enabled,
            started: now,
            last_draw: None,
            entries: 0,
            shown: false,
        }
    }

    /// Counts one entry of the refresh and redraws if it is time; `now` is read only when the line
    /// is drawn at all.
    pub fn entry(&mut self, now: impl FnOnce() -> Instant, out: &mut impl Write) {
        self.entries += 1;
        if !self.enabled {
            return;
        }
        let now = now();
        if self.last_draw.is_some_and(|t| now - t < REDRAW_EVERY) {
            return;
        }
        self.last_draw = Some(now);
        let elapsed = now - self.started;
        let rate = self.entries as f64 / elapsed.as_secs_f64().max(1e-3);
        let _ = write!(
            out,
            "\r\x1b[2Krefreshing: {} entries, {:.0}/s, {:.1} s",
            self.entries,
            rate,
            elapsed.as_secs_f64()
        );
        let _ = out.flush();
        self.shown = true;
    }

    /// Erases the line, if one was drawn, and returns how many entries were counted.
    pub fn finish(&mut self, out: &mut impl Write) -> u64 {
        if self.shown {
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
            self.shown = false;
        }
        std::mem::take(&mut self.entries)
    }

    /// How long since the refresh started.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now - self.started
    }

    /// Starts counting a new refresh.
    pub fn restart(&mut self, now: Instant) {
        self.started = now;
        self.last_draw = None;
        self.entries = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_when_disabled() {
        let t0 = Instant::now();
        let mut p = Progress::new(false, t0);
        let mut out = Vec::new();
        for i in 0..1000 {
            p.entry(|| t0 + Duration::from_millis(i), &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(p.finish(&mut out), 1000);
        assert!(out.is_empty());
    }

    #[test]
    fn draws_at_a_bounded_rate_and_erases() {
        let t0 = Instant::now();
        let mut p = Progress::new(true, t0);
        let mut out = Vec::new();
        for i in 0..1000u64 {
            p.entry(|| t0 + Duration::from_millis(i), &mut out);
        }
        let text = String::from_utf8(out.clone()).expect("ASCII");
        let draws = text.matches("refreshing:").count();
        assert!((4..=6).contains(&draws), "{draws} redraws in one second");
        assert!(text.contains("refreshing: 801 entries"));
        out.clear();
        assert_eq!(p.finish(&mut out), 1000);
        assert_eq!(out, b"\r\x1b[2K");
    }
}
