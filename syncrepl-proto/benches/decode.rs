//! Decode throughput on a real 10,000-entry refresh from slapd (`../shared/captures/refresh-10k.bin`),
//! next to a framing-only pass over the same bytes in the same run:
//!
//! - `framing`: find every message boundary, nothing else;
//! - `events`: the session decodes every message into events (entries as zero-copy views);
//! - `owned`: the same, and every entry is copied into what a mirror keeps (owned DN, detached
//!   attribute list);
//! - `events_64k_reads`: like `events`, fed in 64 KiB pieces as socket reads would.
//!
//! Throughput is in entries per second.
#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented functions"
)]

use std::path::PathBuf;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syncrepl_proto::{message_length, Event, Frame, Session, SessionConfig, SyncMode, SyncRequest};

fn capture() -> Option<Vec<u8>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures/refresh-10k.bin");
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            eprintln!("skipped: {} is not here", path.display());
            None
        }
    }
}

/// A session past its bind, with the sync search started, and the rest of the capture to feed.
fn session(bytes: &[u8]) -> (Session, &[u8]) {
    let mut s = Session::new(SessionConfig::default());
    let _ = s.bind_simple("", b"", Instant::now());
    let first = 2 + usize::from(bytes[1]);
    let _ = s.handle_input(&bytes[..first]);
    while s.poll_event().is_some() {}
    let _ = s.start_sync(&SyncRequest::new(
        "dc=example,dc=com",
        SyncMode::RefreshOnly,
    ));
    (s, &bytes[first..])
}

fn count_entries(bytes: &[u8]) -> u64 {
    let (mut s, rest) = session(bytes);
    let _ = s.handle_input(rest);
    std::iter::from_fn(|| s.poll_event())
        .filter(|e| matches!(e, Event::Entry(_)))
        .count() as u64
}

fn bench(c: &mut Criterion) {
    let Some(bytes) = capture() else {
        return;
    };
    let entries = count_entries(&bytes);
    let mut group = c.benchmark_group("refresh-10k");
    group.throughput(Throughput::Elements(entries));
    group.sample_size(20);

    group.bench_function("framing", |b| {
        b.iter(|| {
            let mut rest = bytes.as_slice();
            let mut n = 0u64;
            while let Ok(Frame::Complete(len)) = message_length(rest, 16 << 20) {
                rest = &rest[len..];
                n += 1;
            }
            n
        })
    });

    group.bench_function("events", |b| {
        b.iter(|| {
            let (mut s, rest) = session(&bytes);
            let _ = s.handle_input(rest);
            let mut n = 0u64;
            while let Some(event) = s.poll_event() {
                if let Event::Entry(e) = event {
                    n += e.attributes.as_ber().len() as u64 & 1;
                }
            }
            n
        })
    });

    group.bench_function("events_64k_reads", |b| {
        b.iter(|| {
            let (mut s, rest) = session(&bytes);
            let mut n = 0u64;
            for chunk in rest.chunks(64 * 1024) {
                let _ = s.handle_input(chunk);
                while let Some(event) = s.poll_event() {
                    n += u64::from(matches!(event, Event::Entry(_)));
                }
            }
            n
        })
    });

    group.bench_function("owned", |b| {
        b.iter(|| {
            let (mut s, rest) = session(&bytes);
            let mut kept = Vec::with_capacity(entries as usize);
            for chunk in rest.chunks(64 * 1024) {
                let _ = s.handle_input(chunk);
                while let Some(event) = s.poll_event() {
                    if let Event::Entry(e) = event {
                        kept.push((e.entry_uuid, e.dn.into_boxed_str(), e.attributes.detach()));
                    }
                }
            }
            kept
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
