//! Several nats-servers in one cluster with JetStream, and how to tell that it has a meta leader.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::node::{backoff, make_node_dir, temp_dir, NatsNode};
use super::{Auth, NatsOptions, CLUSTER_NAME};
use crate::certs;
use crate::host::free_port;
use crate::Error;

/// Several nats-servers on 127.0.0.1 in one cluster with JetStream, each in its own
/// subdirectory `n1/`, `n2/`, … of one temporary directory; dropping it stops them all and
/// removes the directory. Nodes are numbered from 0 in the methods (`node(0)` is `n1`).
#[derive(Debug)]
pub struct NatsCluster {
    options: NatsOptions,
    nodes: Vec<NatsNode>,
    dir: PathBuf,
    /// Removes the directory when dropped; `None` when it is kept.
    _temp: Option<tempfile::TempDir>,
}

impl NatsCluster {
    /// Default options, to change with the chainable setters and then
    /// [`NatsOptions::start_cluster`].
    pub fn builder() -> NatsOptions {
        NatsOptions::default()
    }

    /// Starts a cluster of three nodes with the default options.
    pub fn start() -> Result<NatsCluster, Error> {
        NatsCluster::try_start(NatsOptions::default(), 3)
    }

    /// Starts a cluster of `nodes` nodes (1 to 9; three is what JetStream needs to survive the
    /// loss of one) and waits until they have a meta leader.
    pub fn try_start(options: NatsOptions, nodes: usize) -> Result<NatsCluster, Error> {
        options.check()?;
        if !(1..=9).contains(&nodes) {
            return Err(Error::Options(format!(
                "a cluster of {nodes} nodes: this fixture makes 1 to 9"
            )));
        }
        let (dir, temp) = temp_dir("syncrepl-natsc-")?;
        if options.tls {
            certs::write_all(&dir)?;
        }
        let mut cluster = NatsCluster {
            options,
            nodes: Vec::with_capacity(nodes),
            dir,
            _temp: temp,
        };
        for i in 1..=nodes {
            let dir = cluster.dir.join(format!("n{i}"));
            make_node_dir(&dir)?;
            cluster.nodes.push(NatsNode {
                name: format!("n{i}"),
                args: vec!["-c".into(), dir.join("nats.conf").into()],
                dir,
                port: 0,
                monitor_port: 0,
                cluster_port: None,
                child: None,
                log_start: 0,
            });
        }
        let mut attempt = 0;
        loop {
            match cluster.launch_all() {
                Ok(()) => return Ok(cluster),
                Err(Error::Nats {
                    port_in_use: true, ..
                }) if attempt < 5 => {
                    attempt += 1;
                    // The nodes may have written peer state for the old ports: start afresh.
                    for node in &mut cluster.nodes {
                        node.stop();
                        let store = node.store_dir();
                        let _ = std::fs::remove_dir_all(&store);
                        make_node_dir(&node.dir)?;
                    }
                }
                Err(e) => {
                    for node in &mut cluster.nodes {
                        node.stop();
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Picks new ports for every node, writes the configurations, starts all nodes and waits
    /// until they are ready.
    fn launch_all(&mut self) -> Result<(), Error> {
        let mut taken = Vec::with_capacity(3 * self.nodes.len());
        for node in &mut self.nodes {
            let mut pick = || -> Result<u16, Error> {
                let port = free_port(&taken)?;
                taken.push(port);
                Ok(port)
            };
            node.port = pick()?;
            node.monitor_port = pick()?;
            node.cluster_port = Some(pick()?);
        }
        for i in 0..self.nodes.len() {
            let conf = self.node_conf(i);
            let path = self.nodes[i].dir.join("nats.conf");
            std::fs::write(&path, conf)
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        }
        for node in &mut self.nodes {
            node.spawn()?;
        }
        self.wait_ready()
    }

    /// The configuration file of node `i`, with routes to every other node.
    fn node_conf(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let mut c = String::from("# Written by syncrepl-testkit for one test run.\n");
        let _ = writeln!(
            c,
            "server_name: \"{}\"\nlisten: \"127.0.0.1:{}\"\nhttp: \"127.0.0.1:{}\"\n\
             jetstream {{\n  store_dir: \"{}\"\n}}\n\
             cluster {{\n  name: \"{CLUSTER_NAME}\"\n  listen: \"127.0.0.1:{}\"\n  routes: [",
            node.name,
            node.port,
            node.monitor_port,
            node.store_dir().display(),
            node.cluster_port.unwrap_or_default(),
        );
        for (j, other) in self.nodes.iter().enumerate() {
            if j != i {
                let _ = writeln!(
                    c,
                    "    \"nats://127.0.0.1:{}\"",
                    other.cluster_port.unwrap_or_default()
                );
            }
        }
        c.push_str("  ]\n}\n");
        match &self.options.auth {
            Auth::None => {}
            Auth::User { user, password } => {
                let _ = writeln!(
                    c,
                    "authorization {{\n  user: \"{user}\"\n  password: \"{password}\"\n}}"
                );
            }
            Auth::Token(token) => {
                let _ = writeln!(c, "authorization {{\n  token: \"{token}\"\n}}");
            }
        }
        if self.options.tls {
            let _ = writeln!(
                c,
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}",
                self.dir.join(certs::SERVER_PEM).display(),
                self.dir.join(certs::SERVER_KEY).display()
            );
        }
        if self.options.debug {
            c.push_str("debug: true\n");
        }
        c
    }

    /// Waits (up to [`NatsOptions::start_timeout`]) until every node that was started and not
    /// stopped answers clients, all of them name the same meta leader, which runs, and every
    /// `/healthz` is 200: after [`NatsCluster::stop_node`] or [`NatsCluster::kill9_node`], before
    /// relying on the rest. That needs a majority of the nodes running. A node that exited
    /// meanwhile is an error.
    pub fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + self.options.start_timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            for node in &mut self.nodes {
                if node.child.is_some() {
                    node.check_alive()?;
                }
            }
            let detail = match self.readiness() {
                Ok(()) => return Ok(()),
                Err(detail) => detail,
            };
            if Instant::now() >= deadline {
                let index = self
                    .nodes
                    .iter()
                    .position(|n| n.child.is_some())
                    .unwrap_or_default();
                return Err(self.nodes[index].failure(format!(
                    "the cluster was not ready within {:?}: {detail}",
                    self.options.start_timeout
                )));
            }
            backoff(&mut pause, Duration::from_millis(50));
        }
    }

    /// `Ok` when the running nodes are ready (see [`NatsCluster::wait_ready`]), else what is
    /// missing.
    fn readiness(&self) -> Result<(), String> {
        let running: Vec<&NatsNode> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
        if running.is_empty() {
            return Err("no node runs".into());
        }
        if let Some(node) = running.iter().find(|n| !n.answers()) {
            return Err(format!("{} does not answer clients", node.name));
        }
        let leaders: Vec<Option<String>> = running.iter().map(|n| n.meta_leader()).collect();
        let agreed = leaders
            .first()
            .cloned()
            .flatten()
            .filter(|l| leaders.iter().all(|o| o.as_ref() == Some(l)));
        match agreed {
            Some(l) if running.iter().any(|n| n.name == l) => {}
            _ => {
                let names: Vec<&str> = running.iter().map(|n| n.name.as_str()).collect();
                return Err(format!(
                    "running nodes {names:?} name the meta leaders {leaders:?}"
                ));
            }
        }
        for node in &running {
            match node.monitor("/healthz") {
                Some((200, _)) => {}
                other => return Err(format!("{}'s /healthz: {other:?}", node.name)),
            }
        }
        Ok(())
    }

    /// The options it was started with.
    pub fn options(&self) -> &NatsOptions {
        &self.options
    }

    /// Its temporary directory (`n1/`, `n2/`, … and the certificates).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many nodes it has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has no nodes (never: it has 1 to 9).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i` (from 0; its name is `n{i+1}`).
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn node(&self, i: usize) -> &NatsNode {
        &self.nodes[i]
    }

    /// All nodes, `n1` first.
    pub fn nodes(&self) -> &[NatsNode] {
        &self.nodes
    }

    /// Every node's client URL, comma-joined as the Go client, the `nats` tool and nats.py take
    /// them: `nats://127.0.0.1:P1,nats://127.0.0.1:P2,…`. (async-nats wants a list:
    /// [`NatsCluster::url_list`].)
    pub fn urls(&self) -> String {
        self.url_list().join(",")
    }

    /// Every node's client URL, `n1`'s first.
    pub fn url_list(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::url).collect()
    }

    /// The CA certificate (PEM) that signed the nodes' certificate, `None` without TLS.
    pub fn ca_pem(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.dir.join(certs::CA_PEM))
    }

    /// The index of the node the running nodes agree is the JetStream meta leader, `None` while
    /// they do not agree or name none.
    pub fn meta_leader(&self) -> Option<usize> {
        let mut leaders = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(NatsNode::meta_leader);
        let first = leaders.next().flatten()?;
        if !leaders.all(|l| l.as_ref() == Some(&first)) {
            return None;
        }
        self.nodes.iter().position(|n| n.name == first)
    }

    /// Whether node `i` runs (it was started and has not exited).
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// Stops node `i` with SIGTERM (a meta leader hands over first), waits up to 10 s, then
    /// SIGKILL. Does not wait for the others: see [`NatsCluster::wait_ready`]. Does nothing
    /// when it is not running.
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn stop_node(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Kills node `i` with SIGKILL, as a crash would. When it was the meta leader, the others
    /// elect a new one after about 5 s.
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn kill9_node(&mut self, i: usize) {
        self.nodes[i].kill9();
    }

    /// Starts node `i` again on the same ports with its store, and waits until it and every
    /// other running node are ready ([`NatsCluster::wait_ready`]); retries while another
    /// process holds one of its ports, up to [`NatsOptions::start_timeout`]. Only waits when
    /// it runs already.
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn start_node(&mut self, i: usize) -> Result<(), Error> {
        let deadline = Instant::now() + self.options.start_timeout;
        if !self.nodes[i].is_running() {
            // Reaps a node that exited by itself.
            self.nodes[i].stop();
            loop {
                self.nodes[i].spawn()?;
                match self.wait_ready() {
                    Err(Error::Nats {
                        port_in_use: true, ..
                    }) if Instant::now() < deadline => {
                        self.nodes[i].stop();
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    other => return other,
                }
            }
        }
        self.wait_ready()
    }

    /// Stops node `i` if it runs and starts it again ([`NatsCluster::start_node`]).
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn restart_node(&mut self, i: usize) -> Result<(), Error> {
        self.nodes[i].stop();
        self.start_node(i)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        // The temporary directory goes with `_temp`, dropped after this.
    }
}

/// The `leader` of the `meta_cluster` object in a `/jsz` body, if it names one. Server names
/// here are plain (`n1`, …), so the string is taken as it stands, without unescaping.
pub(super) fn meta_leader_of(jsz: &str) -> Option<String> {
    let rest = &jsz[jsz.find("\"meta_cluster\"")?..];
    let object = &rest[rest.find('{')?..];
    // The object ends at its matching brace (its replicas are objects too); no server name or
    // cluster name here has braces or quotes.
    let mut depth = 0usize;
    let mut end = object.len();
    for (i, b) in object.bytes().enumerate() {
        match b {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            _ => {}
        }
    }
    let object = &object[..end];
    let after = &object[object.find("\"leader\"")? + "\"leader\"".len()..];
    let value = after.trim_start().strip_prefix(':')?.trim_start();
    let value = value.strip_prefix('"')?;
    let name = &value[..value.find('"')?];
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meta_leader_comes_from_meta_cluster() {
        let leader = "{\n  \"server_id\": \"NB\",\n  \"meta_cluster\": {\n    \"name\": \"syncrepl\",\n    \
             \"leader\": \"n1\",\n    \"peer\": \"fjFyEjc1\",\n    \"replicas\": [\n      {\n        \
             \"name\": \"n2\",\n        \"current\": true\n      }\n    ],\n    \"cluster_size\": 3\n  }\n}";
        assert_eq!(meta_leader_of(leader).as_deref(), Some("n1"));
        let follower =
            "{\"meta_cluster\":{\"name\":\"syncrepl\",\"leader\":\"n3\",\"cluster_size\":3}}";
        assert_eq!(meta_leader_of(follower).as_deref(), Some("n3"));
        let none = "{\"meta_cluster\": {\"name\": \"syncrepl\", \"peer\": \"x\", \"cluster_size\": 3}, \"leader\": \"elsewhere\"}";
        assert_eq!(meta_leader_of(none), None);
        assert_eq!(meta_leader_of("{\"streams\": 0}"), None);
        assert_eq!(
            meta_leader_of("{\"meta_cluster\": {\"leader\": \"\"}}"),
            None
        );
    }

    #[test]
    fn cluster_configurations_route_to_the_others() {
        let node = |i: u16| NatsNode {
            name: format!("n{i}"),
            dir: PathBuf::from(format!("/t/n{i}")),
            port: 4000 + i,
            monitor_port: 8000 + i,
            cluster_port: Some(6000 + i),
            args: Vec::new(),
            child: None,
            log_start: 0,
        };
        let cluster = NatsCluster {
            options: NatsOptions::default().token("tok").tls(true),
            nodes: vec![node(1), node(2), node(3)],
            dir: PathBuf::from("/t"),
            _temp: None,
        };
        let conf = cluster.node_conf(1);
        for line in [
            "server_name: \"n2\"\n",
            "listen: \"127.0.0.1:4002\"\n",
            "http: \"127.0.0.1:8002\"\n",
            "  store_dir: \"/t/n2/jetstream\"\n",
            "  name: \"syncrepl\"\n",
            "  listen: \"127.0.0.1:6002\"\n",
            "    \"nats://127.0.0.1:6001\"\n",
            "    \"nats://127.0.0.1:6003\"\n",
            "  token: \"tok\"\n",
            "  cert_file: \"/t/server.pem\"\n",
        ] {
            assert!(conf.contains(line), "{line:?} in\n{conf}");
        }
        assert!(
            !conf.contains("nats://127.0.0.1:6002"),
            "no route to itself:\n{conf}"
        );
        assert_eq!(
            cluster.urls(),
            "nats://127.0.0.1:4001,nats://127.0.0.1:4002,nats://127.0.0.1:4003"
        );
    }
}
