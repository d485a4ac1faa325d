//! Reconnect schedules in the style of slapd's `retry="5 10 60 +"`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Pairs of (interval, count): retry every `interval` up to `count` times, then move to the next
/// pair; a final `+` repeats the last interval forever. `"5 10 60 +"` means ten retries five
/// seconds apart, then one a minute forever. Each wait gets ±20 % jitter so that many consumers
/// restarted together do not reconnect in step.
#[derive(Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    steps: Vec<(Duration, Option<u32>)>,
}

/// A malformed retry schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry schedule {text:?}: {reason} (expected pairs like \"5 10 60 +\")")]
pub struct RetryParseError {
    text: String,
    reason: &'static str,
}

impl RetrySchedule {
    /// Never retry.
    pub fn never() -> RetrySchedule {
        RetrySchedule { steps: Vec::new() }
    }

    /// The wait before retry number `attempt` (0-based), without jitter; `None` when the schedule
    /// is exhausted.
    pub fn base_delay(&self, attempt: u32) -> Option<Duration> {
        let mut left = attempt;
        for &(interval, count) in &self.steps {
            match count {
                None => return Some(interval),
                Some(n) if left < n => return Some(interval),
                Some(n) => left -= n,
            }
        }
        None
    }

    /// The wait before retry number `attempt`, with ±20 % jitter.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        self.base_delay(attempt)
            .map(|d| d.mul_f64(0.8 + 0.4 * fastrand::f64()))
    }
}

impl Default for RetrySchedule {
    /// `"5 10 60 +"`: slapd's usual choice.
    fn default() -> Self {
        RetrySchedule {
            steps: vec![
                (Duration::from_secs(5), Some(10)),
                (Duration::from_secs(60), None),
            ],
        }
    }
}

impl FromStr for RetrySchedule {
    type Err = RetryParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| RetryParseError {
            text: text.to_owned(),
            reason,
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() {
            return Err(bad("empty"));
        }
        if !words.len().is_multiple_of(2) {
            return Err(bad("an interval without a count"));
        }
        let mut steps = Vec::new();
        for (i, pair) in words.chunks(2).enumerate() {
            let secs: f64 = pair[0]
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| bad("an interval is not a number of seconds"))?;
            let interval = Duration::from_secs_f64(secs);
            let count = if pair[1] == "+" {
                if i != words.len() / 2 - 1 {
                    return Err(bad("'+' can only end the schedule"));
                }
                None
            } else {
                Some(
                    pair[1]
                        .parse()
                        .map_err(|_| bad("a count is not a whole number or '+'"))?,
                )
            };
            steps.push((interval, count));
        }
        Ok(RetrySchedule { steps })
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (interval, count) in &self.steps {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{}", interval.as_secs_f64())?;
            match count {
                Some(n) => write!(f, " {n}")?,
                None => f.write_str(" +")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetrySchedule({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slapd_style_schedule() {
        let s: RetrySchedule = "5 2 60 +".parse().expect("valid");
        assert_eq!(s.base_delay(0), Some(Duration::from_secs(5)));
        assert_eq!(s.base_delay(1), Some(Duration::from_secs(5)));
        assert_eq!(s.base_delay(2), Some(Duration::from_secs(60)));
        assert_eq!(s.base_delay(1000), Some(Duration::from_secs(60)));
        let finite: RetrySchedule = "0.5 3".parse().expect("valid");
        assert_eq!(finite.base_delay(2), Some(Duration::from_millis(500)));
        assert_eq!(finite.base_delay(3), None);
        assert_eq!(RetrySchedule::never().base_delay(0), None);
        for _ in 0..100 {
            let d = s.delay(0).expect("scheduled");
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(6),
                "{d:?}"
            );
        }
        assert_eq!(s.to_string(), "5 2 60 +");
    }

    #[test]
    fn malformed_schedules() {
        for bad in ["", "5", "x 3", "5 +  60 2", "5 -1", "-5 3"] {
            assert!(bad.parse::<RetrySchedule>().is_err(), "{bad:?}");
        }
    }
}
