//! JetStream's own cost, the benchmark's floor: `COUNT` messages shaped like the publisher's (a
//! body of `BYTES`, the same headers, one subject per entry) published with a window of 1024
//! and each acknowledged, from a client with nothing else to do.
//!
//! `cargo run --release -p syncrepl-nats --example jetstream_floor -- NATS_URL STREAM COUNT BYTES`

use std::time::Instant;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use syncrepl_nats::acks::{self, Answer, Inbox, Window};
use syncrepl_nats::{NatsArgs, StreamSettings, Subjects};
use tokio::sync::Semaphore;

const WINDOW: usize = 1024;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, stream, count, bytes] = args.as_slice() else {
        return Err("usage: jetstream_floor NATS_URL STREAM COUNT BYTES".into());
    };
    let count: u64 = count.parse()?;
    let body = Bytes::from(vec![b'x'; bytes.parse()?]);
    let client = NatsArgs::new(url).connect().await?;
    let subjects = Subjects::new(&stream.to_lowercase())?;
    StreamSettings::new(stream.as_str())
        .ensure(&async_nats::jetstream::new(client.clone()), &subjects)
        .await?;
    let (prefix, mut answers) = Inbox::subscribe(&client).await?.into_parts();
    let started = Instant::now();
    let window = std::sync::Arc::new(std::sync::Mutex::new(Window::default()));
    let permits = std::sync::Arc::new(Semaphore::new(WINDOW));
    let publishing = {
        let (client, window, permits) = (client.clone(), window.clone(), permits.clone());
        tokio::spawn(async move {
            for seq in 1..=count {
                permits.acquire().await?.forget();
                let index = window
                    .lock()
                    .map_err(|e| e.to_string())?
                    .push(Some(seq), Instant::now());
                let uuid = format!("{seq:08x}-0000-4000-8000-000000000000");
                let mut headers = HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    format!("floor-{seq}").as_str(),
                );
                headers.insert("Syncrepl-Seq", seq.to_string().as_str());
                headers.insert("Syncrepl-Kind", "add");
                headers.insert("Syncrepl-EntryUUID", uuid.as_str());
                headers.insert(
                    "Syncrepl-DN",
                    format!("uid=user{seq},ou=people,dc=example,dc=com").as_str(),
                );
                client
                    .publish_with_reply_and_headers(
                        subjects.entry(&uuid),
                        format!("{prefix}.{index}"),
                        headers,
                        body.clone(),
                    )
                    .await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
    };
    let mut settled = 0;
    while settled < count {
        let message = answers.next().await.ok_or("the subscription ended")?;
        let index = acks::reply_index(&message.subject).ok_or("an answer on another subject")?;
        if let Answer::Refused(why) = acks::answer(&message) {
            return Err(why.into());
        }
        let mut window = window.lock().map_err(|e| e.to_string())?;
        window.answer(index, false)?;
        let done = window.settle().count();
        settled += done as u64;
        permits.add_permits(done);
    }
    publishing.await?.map_err(|e| e.to_string())?;
    println!(
        "{count} messages acknowledged in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
