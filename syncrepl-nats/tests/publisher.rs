//! The publisher's reading of JetStream's answers, against a real nats-server: a message stored,
//! the same message id dropped as a duplicate, a subject no stream listens on, and a stream that
//! refuses a message. Each failure stops the publisher with the server's reason.

mod common;

use async_nats::jetstream::stream::{Config, DiscardPolicy};
use syncrepl::Consumer;
use syncrepl_nats::acks::Inbox;
use syncrepl_nats::{NatsArgs, Publisher, StreamSettings, Subjects};
use syncrepl_testkit::NatsServer;

use common::runtime;

fn publisher(rt: &tokio::runtime::Runtime, nats: &NatsServer, prefix: &str, id: &str) -> Publisher {
    let (client, inbox) = rt.block_on(async {
        let client = NatsArgs::new(nats.url()).connect().await.expect("connect");
        let inbox = Inbox::subscribe(&client).await.expect("subscribe");
        (client, inbox)
    });
    let subjects = Subjects::new(prefix).expect("prefix");
    Publisher::new(rt.handle(), client, inbox, subjects, id.into(), 16)
}

#[test]
fn a_message_id_seen_before_is_counted_as_a_duplicate() {
    let nats = NatsServer::start().expect("nats");
    let rt = runtime();
    rt.block_on(async {
        let client = NatsArgs::new(nats.url()).connect().await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let subjects = Subjects::new("dup").expect("prefix");
        StreamSettings::new("DUP")
            .ensure(&js, &subjects)
            .await
            .expect("stream");
    });
    let mut publisher = publisher(&rt, &nats, "dup", "0123456789abcdef0123456789abcdef");
    // Nothing is acknowledged yet, so both markers carry the same id.
    publisher.on_cookie(None).expect("stored");
    publisher.on_cookie(None).expect("dropped, not refused");
    let stats = publisher.stats();
    assert_eq!((stats.stored, stats.duplicates), (1, 1), "{stats:?}");
    assert!(!publisher.failed());
}

#[test]
fn a_subject_without_a_stream_stops_the_publisher() {
    let nats = NatsServer::start().expect("nats");
    let rt = runtime();
    let mut publisher = publisher(&rt, &nats, "nostream", "0123456789abcdef0123456789abcdef");
    let error = publisher.on_cookie(None).expect_err("no stream listens");
    assert!(error.to_string().contains("no stream listens"), "{error}");
    assert!(publisher.failed());
    let stats = publisher.stats();
    assert_eq!((stats.stored, stats.duplicates), (0, 0));
    let again = publisher.on_cookie(None).expect_err("stays failed");
    assert!(again.to_string().contains("no stream listens"), "{again}");
}

#[test]
fn a_stream_that_refuses_a_message_stops_the_publisher_with_its_reason() {
    let nats = NatsServer::start().expect("nats");
    let rt = runtime();
    rt.block_on(async {
        let client = NatsArgs::new(nats.url()).connect().await.expect("connect");
        let js = async_nats::jetstream::new(client);
        js.create_stream(Config {
            name: "FULL".into(),
            subjects: vec!["full.>".into()],
            max_messages: 1,
            discard: DiscardPolicy::New,
            ..Config::default()
        })
        .await
        .expect("stream");
    });
    let mut first = publisher(&rt, &nats, "full", "0123456789abcdef0123456789abcdef");
    first
        .on_cookie(None)
        .expect("the one message the stream takes");
    let mut second = publisher(&rt, &nats, "full", "fedcba9876543210fedcba9876543210");
    let error = second.on_cookie(None).expect_err("the stream is full");
    assert!(error.to_string().contains("maximum messages"), "{error}");
    assert!(second.failed());
    assert_eq!(second.stats().stored, 0);
}
