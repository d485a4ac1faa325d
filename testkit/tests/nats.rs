//! The NATS fixtures against Debian's nats-server: one server (its `INFO` line over a plain TCP
//! socket, authentication, TLS, a JetStream store that survives restarts) and a cluster of three
//! (an R3 stream through async-nats, a node stopped, killed and started again).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use syncrepl_testkit::nats::{Auth, SERVER_NAME};
use syncrepl_testkit::{Error, NatsCluster, NatsServer};

/// The `INFO {…}` line a client gets on connecting to `addr`, and the reader for more.
fn info_line(addr: SocketAddr) -> (String, BufReader<TcpStream>) {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a timeout");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read INFO");
    (line, reader)
}

/// Sends `CONNECT` with `fields` and a `PING`; returns the server's next line (`PONG` or `-ERR`).
fn connect_and_ping(reader: &mut BufReader<TcpStream>, fields: &str) -> String {
    let connect = format!("CONNECT {{\"verbose\":false,\"pedantic\":false{fields}}}\r\nPING\r\n");
    reader
        .get_mut()
        .write_all(connect.as_bytes())
        .expect("send CONNECT");
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the answer");
    line
}

/// A current-thread runtime for the async-nats parts.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The stream's message count through a new connection to `urls`.
async fn messages(urls: Vec<String>, name: &str) -> u64 {
    let client = async_nats::connect(urls).await.expect("connect");
    let js = jetstream::new(client);
    let mut stream = js.get_stream(name).await.expect("the stream exists");
    stream.info().await.expect("stream info").state.messages
}

#[test]
fn a_server_starts_at_once_and_says_jetstream_in_its_info() {
    let started = Instant::now();
    let mut nats = NatsServer::start().expect("nats-server starts");
    let took = started.elapsed();
    println!("nats-server ready in {:.3} s", took.as_secs_f64());
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(nats.is_running() && nats.pid().is_some());
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
    assert!(nats.store_dir().starts_with(nats.dir()) && nats.store_dir().is_dir());
    assert!(nats.ca_pem().is_none());

    let (info, mut reader) = info_line(nats.addr());
    assert!(
        info.starts_with("INFO {") && info.trim_end().ends_with('}'),
        "{info}"
    );
    for field in [
        "\"jetstream\":true",
        &format!("\"port\":{}", nats.port()),
        &format!("\"server_name\":\"{SERVER_NAME}\""),
        "\"host\":\"127.0.0.1\"",
    ] {
        assert!(info.contains(field), "{field} in {info}");
    }
    assert!(!info.contains("\"auth_required\":true"), "{info}");
    assert_eq!(connect_and_ping(&mut reader, ""), "PONG\r\n");

    let (status, jsz) = nats.node().monitor("/jsz").expect("/jsz answers");
    assert_eq!(status, 200);
    assert!(jsz.contains(&nats.store_dir().join("jetstream").display().to_string()));
    assert!(nats.log().contains("Server is ready"), "{}", nats.log());

    nats.stop();
    assert!(!nats.is_running() && nats.pid().is_none());
    assert!(TcpStream::connect(nats.addr()).is_err());
}

#[test]
fn restart_keeps_the_port_and_the_jetstream_store() {
    let mut nats = NatsServer::start().expect("nats-server starts");
    let (port, store) = (nats.port(), nats.store_dir());
    let url = vec![nats.url()];
    let rt = runtime();
    rt.block_on(async {
        let client = async_nats::connect(url.clone()).await.expect("connect");
        let js = jetstream::new(client);
        js.create_stream(stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["events.>".into()],
            ..Default::default()
        })
        .await
        .expect("create the stream");
        for i in 0..3 {
            let ack = js
                .publish(format!("events.{i}"), "hello".into())
                .await
                .expect("publish")
                .await
                .expect("ack");
            assert_eq!((ack.stream.as_str(), ack.sequence), ("EVENTS", i + 1));
        }
    });
    let old_pid = nats.pid();
    let started = Instant::now();
    nats.restart().expect("restart");
    println!(
        "nats-server restarted in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    assert_ne!(nats.pid(), old_pid);
    assert_eq!((nats.port(), nats.store_dir()), (port, store.clone()));
    assert!(store.join("jetstream").is_dir());
    assert_eq!(rt.block_on(messages(url.clone(), "EVENTS")), 3);

    // A crash: what was acknowledged was written before the ack.
    nats.kill9();
    assert!(!nats.is_running());
    nats.restart().expect("start again after SIGKILL");
    assert_eq!(rt.block_on(messages(url, "EVENTS")), 3);
    assert_eq!(nats.log().matches("Server is ready").count(), 3);
}

#[test]
fn restart_waits_for_a_port_another_process_holds() {
    let mut nats = NatsServer::start().expect("nats-server starts");
    nats.stop();
    let holder = std::net::TcpListener::bind(nats.addr()).expect("take the port");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(holder);
    });
    let started = Instant::now();
    nats.restart().expect("restart once the port is free");
    assert!(started.elapsed() >= Duration::from_millis(400));
    release.join().expect("the holder thread");
    let (info, _) = info_line(nats.addr());
    assert!(info.contains("\"jetstream\":true"), "{info}");
    assert!(nats.log().contains("address already in use"));
}

#[test]
fn tokens_and_passwords_are_required_when_set() {
    let nats = NatsServer::builder()
        .token("s3cret")
        .start()
        .expect("nats-server starts");
    assert_eq!(nats.options().auth, Auth::Token("s3cret".into()));
    let (info, mut reader) = info_line(nats.addr());
    assert!(info.contains("\"auth_required\":true"), "{info}");
    assert_eq!(
        connect_and_ping(&mut reader, ",\"auth_token\":\"s3cret\""),
        "PONG\r\n"
    );
    let (_, mut reader) = info_line(nats.addr());
    let refused = connect_and_ping(&mut reader, ",\"auth_token\":\"wrong\"");
    assert!(
        refused.starts_with("-ERR 'Authorization Violation'"),
        "{refused}"
    );

    let nats = NatsServer::builder()
        .user("reader", "pw")
        .start()
        .expect("nats-server starts");
    let (_, mut reader) = info_line(nats.addr());
    assert_eq!(
        connect_and_ping(&mut reader, ",\"user\":\"reader\",\"pass\":\"pw\""),
        "PONG\r\n"
    );
    let (_, mut reader) = info_line(nats.addr());
    let refused = connect_and_ping(&mut reader, "");
    assert!(
        refused.starts_with("-ERR 'Authorization Violation'"),
        "{refused}"
    );

    runtime().block_on(async {
        let options =
            async_nats::ConnectOptions::with_user_and_password("reader".into(), "pw".into());
        let client = options
            .connect(nats.url())
            .await
            .expect("connect with the password");
        client.flush().await.expect("flush");
    });

    let bad = NatsServer::builder().user("u", "quote\"d").start();
    assert!(matches!(bad, Err(Error::Options(_))), "{bad:?}");
}

#[test]
fn tls_servers_require_it_and_the_test_ca_verifies_them() {
    let nats = NatsServer::builder()
        .tls(true)
        .token("t")
        .start()
        .expect("nats-server starts with TLS");
    let ca = nats.ca_pem().expect("a CA with TLS");
    assert!(ca.is_file());
    let (info, _) = info_line(nats.addr());
    assert!(info.contains("\"tls_required\":true"), "{info}");
    runtime().block_on(async {
        let client = async_nats::ConnectOptions::with_token("t".into())
            .add_root_certificates(ca)
            .require_tls(true)
            .connect(nats.url())
            .await
            .expect("a verified TLS connection");
        let js = jetstream::new(client);
        js.create_stream(stream::Config {
            name: "TLS".into(),
            subjects: vec!["tls".into()],
            ..Default::default()
        })
        .await
        .expect("create a stream over TLS");
        js.publish("tls", "x".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    });
}

#[test]
fn a_cluster_of_three_elects_a_leader_and_survives_a_node_going_away() {
    let started = Instant::now();
    let mut cluster = NatsCluster::start().expect("the cluster starts");
    let took = started.elapsed();
    println!("cluster of 3 ready in {:.3} s", took.as_secs_f64());
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(cluster.len(), 3);
    let urls = cluster.urls();
    assert_eq!(urls.split(',').count(), 3, "{urls}");
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.name(), format!("n{}", i + 1));
        assert!(urls.contains(&node.url()));
        let (info, mut reader) = info_line(node.addr());
        assert!(info.contains("\"jetstream\":true"), "{info}");
        assert!(info.contains("\"cluster\":\"syncrepl\""), "{info}");
        assert_eq!(connect_and_ping(&mut reader, ""), "PONG\r\n");
    }
    let leader = cluster.meta_leader().expect("a meta leader");

    let rt = runtime();
    let list = cluster.url_list();
    rt.block_on(async {
        let client = async_nats::connect(list.clone()).await.expect("connect");
        let js = jetstream::new(client);
        let mut stream = js
            .create_stream(stream::Config {
                name: "R3".into(),
                subjects: vec!["r3.>".into()],
                num_replicas: 3,
                ..Default::default()
            })
            .await
            .expect("create an R3 stream");
        let ack = js
            .publish("r3.a", "one".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        assert_eq!(ack.sequence, 1);
        let info = stream.info().await.expect("stream info");
        let replicas = info.cluster.as_ref().map(|c| c.replicas.len());
        assert_eq!(replicas, Some(2), "{:?}", info.cluster);
    });

    // The meta leader goes away with SIGTERM: it hands over, the others go on.
    cluster.stop_node(leader);
    assert!(!cluster.is_running(leader) && cluster.node(leader).pid().is_none());
    let started = Instant::now();
    cluster.wait_ready().expect("the other two have a leader");
    println!(
        "new meta leader after SIGTERM in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let new_leader = cluster.meta_leader().expect("a new meta leader");
    assert_ne!(new_leader, leader);
    assert!(TcpStream::connect(cluster.node(leader).addr()).is_err());
    for i in (0..3).filter(|&i| i != leader) {
        let (info, _) = info_line(cluster.node(i).addr());
        assert!(info.contains("\"jetstream\":true"), "{info}");
    }
    rt.block_on(async {
        let client = async_nats::connect(list.clone()).await.expect("connect");
        let js = jetstream::new(client);
        let ack = tokio::time::timeout(Duration::from_secs(10), async {
            js.publish("r3.b", "two".into())
                .await
                .expect("publish")
                .await
        })
        .await
        .expect("an ack in time")
        .expect("two of three replicas acknowledge");
        assert_eq!(ack.sequence, 2);
    });

    let started = Instant::now();
    cluster.start_node(leader).expect("the node comes back");
    println!(
        "stopped node back in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    assert!(cluster.is_running(leader));
    let (info, _) = info_line(cluster.node(leader).addr());
    assert!(info.contains("\"jetstream\":true"), "{info}");
    assert_eq!(rt.block_on(messages(list, "R3")), 2);
}

#[test]
fn a_killed_follower_comes_back_with_its_store() {
    let mut cluster = NatsCluster::start().expect("the cluster starts");
    let leader = cluster.meta_leader().expect("a meta leader");
    let follower = (leader + 1) % cluster.len();
    let store = cluster.node(follower).store_dir();
    cluster.kill9_node(follower);
    cluster
        .wait_ready()
        .expect("the other two keep their leader");
    assert_eq!(cluster.meta_leader(), Some(leader));
    let started = Instant::now();
    cluster
        .restart_node(follower)
        .expect("the follower comes back");
    println!(
        "killed follower back in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(cluster.node(follower).store_dir(), store);
    assert!(store.join("jetstream").is_dir());
    assert!(cluster.meta_leader().is_some());
}

#[test]
fn clusters_are_one_to_nine_nodes() {
    for n in [0, 10] {
        let result = NatsCluster::builder().start_cluster(n);
        assert!(matches!(result, Err(Error::Options(_))), "{n}: {result:?}");
    }
}
