//! The Redis backend on a real Redis Cluster: three masters
//! ([`TestCluster`], each a `redis-server --cluster-enabled yes` on free
//! loopback ports, joined by `redis-cli --cluster create`). Every dict
//! here is opened with the first node's URL only, so a dict whose slot is
//! on another node is reached through `MOVED`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::test_support::{as_int, free_port, get_int, int, node_with, until_within, Parts, Seen};
use crate::convert::Value;
use crate::shared_dict::{Condition, DictError, EventKind, Holder, SharedDict, Stored};

/// Three cluster masters of the test's own, stopped on drop.
pub struct TestCluster {
    pub ports: Vec<u16>,
    dir: PathBuf,
    children: Vec<Child>,
}

impl TestCluster {
    pub fn start() -> TestCluster {
        TestCluster::start_with(3, 0)
    }

    /// `masters` masters with `replicas` replicas each; a node is declared
    /// failed after 1 s unreachable (so a failover takes seconds).
    pub fn start_with(masters: usize, replicas: usize) -> TestCluster {
        let dir = std::env::temp_dir().join(format!(
            "pybridge-redis-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut cluster = TestCluster {
            ports: Vec::new(),
            dir,
            children: Vec::new(),
        };
        for _ in 0..masters * (1 + replicas) {
            let (port, bus) = (free_port(), free_port());
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-port", &bus.to_string()])
                .args(["--cluster-node-timeout", "1000"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .arg("--dir")
                .arg(&cluster.dir)
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts (make deps installs it)");
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            wait_for(&format!("node {port} answers"), || {
                cluster.try_conn(port).is_some()
            });
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for &port in &cluster.ports {
            wait_for("cluster_state:ok on every node", || {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut cluster.conn(port))
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
            });
        }
        cluster
    }

    pub fn url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}/", self.ports[i])
    }

    fn try_conn(&self, port: u16) -> Option<redis::Connection> {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .ok()?
            .get_connection()
            .ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok()?;
        Some(c)
    }

    pub fn conn(&self, port: u16) -> redis::Connection {
        self.try_conn(port).expect("a test connection")
    }

    /// The hash slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.conn(self.ports[0]))
            .expect("keyslot")
    }

    /// The port of the node that serves `slot`.
    pub fn owner(&self, slot: u16) -> u16 {
        self.nodes_of(slot, self.ports[0])[0]
    }

    /// The ports of the master serving `slot`, then its replicas, as the
    /// node at `ask` sees them.
    pub fn nodes_of(&self, slot: u16, ask: u16) -> Vec<u16> {
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.conn(ask))
            .expect("cluster slots");
        for r in ranges {
            let redis::Value::Array(parts) = r else {
                continue;
            };
            let (Some(redis::Value::Int(lo)), Some(redis::Value::Int(hi))) =
                (parts.first(), parts.get(1))
            else {
                continue;
            };
            if (*lo..=*hi).contains(&i64::from(slot)) {
                return parts[2..]
                    .iter()
                    .filter_map(|node| match node {
                        redis::Value::Array(node) => match node.get(1) {
                            Some(redis::Value::Int(port)) => Some(*port as u16),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect();
            }
        }
        panic!("no node serves slot {slot}");
    }

    /// Kills the node at `port` (no shutdown: as a crash).
    pub fn kill(&mut self, port: u16) {
        if let Some(i) = self.ports.iter().position(|p| *p == port) {
            let _ = self.children[i].kill();
            let _ = self.children[i].wait();
        }
    }

    fn id(&self, port: u16) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.conn(port))
            .expect("myid")
    }

    /// Moves `slot` from node `from` to node `to` the way `redis-cli
    /// --cluster reshard` does: IMPORTING/MIGRATING, MIGRATE every key,
    /// then the slot's new owner on every node. `between` runs after each
    /// batch of keys moved (while the slot is half-migrated).
    pub fn migrate(&self, slot: u16, from: u16, to: u16, mut between: impl FnMut()) {
        let (from_id, to_id) = (self.id(from), self.id(to));
        let (mut src, mut dst) = (self.conn(from), self.conn(to));
        let setslot = |c: &mut redis::Connection, how: &str, id: &str| {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(how)
                .arg(id)
                .query::<()>(c)
                .expect("setslot");
        };
        setslot(&mut dst, "IMPORTING", &from_id);
        setslot(&mut src, "MIGRATING", &to_id);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(10)
                .query(&mut src)
                .expect("getkeysinslot");
            if keys.is_empty() {
                break;
            }
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query::<()>(&mut src)
                .expect("migrate");
            between();
        }
        for &port in &self.ports {
            setslot(&mut self.conn(port), "NODE", &to_id);
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits (up to 20 s: a cluster settling) until `f` holds.
fn wait_for(what: &str, f: impl FnMut() -> bool) {
    until_within(what, Duration::from_secs(20), f);
}

/// A dict named `name` through `url` (prefix `c`), as one node sees it.
fn cluster_node(url: &str, name: &str) -> (Arc<SharedDict>, Parts) {
    node_with(url, "c", name, 2)
}

/// A dict name whose slot the node at `port` serves (`on`) or does not.
fn name_where(cluster: &TestCluster, port: u16, on: bool) -> String {
    (0..)
        .map(|i| format!("d{i}"))
        .find(|n| (cluster.owner(cluster.slot(&format!("{{c:{n}}}"))) == port) == on)
        .expect("a name")
}

#[test]
fn dicts_on_different_slots_work_through_the_first_nodes_url() {
    let cluster = TestCluster::start();
    let seed = cluster.url(0);
    let here = name_where(&cluster, cluster.ports[0], true);
    let there = name_where(&cluster, cluster.ports[0], false);
    assert_ne!(
        cluster.slot(&format!("{{c:{here}}}")),
        cluster.slot(&format!("{{c:{there}}}"))
    );
    for name in [&here, &there] {
        let (
            a,
            Parts {
                shared: a_shared, ..
            },
        ) = cluster_node(&seed, name);
        let (b, _) = cluster_node(&seed, name);
        let port = cluster.owner(cluster.slot(&format!("{{c:{name}}}")));
        assert!(
            a_shared.pool.url().contains(&format!(":{port}")),
            "the pool talks to the slot's node {port}: {}",
            a_shared.pool.url()
        );
        let seen = Seen::on(&b, true);

        a.put("k", int(1), None, Condition::Always).unwrap();
        assert_eq!(get_int(&b, "k"), Some(1));
        b.put(
            "big",
            Stored::Plain(Value::Bytes(vec![7; 10_000])),
            None,
            Condition::Always,
        )
        .unwrap();
        assert!(matches!(b.incr("n", 5).unwrap(), Value::Int(5)));
        a.put("t", int(9), Some(100), Condition::Always).unwrap();
        assert_eq!(a.len().unwrap(), 4);
        let mut keys: Vec<String> = b.keys().unwrap().iter().map(|k| k.to_string()).collect();
        keys.sort();
        assert!(keys.starts_with(&["big".to_owned(), "k".to_owned(), "n".to_owned()]));
        assert_eq!(a.entries().unwrap().len(), keys.len());
        assert!(b.take("k").unwrap().is_some());

        // Events on the other node, values included (a big one read back
        // by version), and the expiry once.
        wait_for("events", || seen.len() >= 5);
        let events = seen.items();
        let kinds: Vec<(EventKind, &str)> = events
            .iter()
            .map(|(k, key, _)| (*k, key.as_str()))
            .collect();
        assert_eq!(
            &kinds[..5],
            &[
                (EventKind::Put, "k"),
                (EventKind::Put, "big"),
                (EventKind::Put, "n"),
                (EventKind::Put, "t"),
                (EventKind::Delete, "k"),
            ]
        );
        assert_eq!(events[0].2.as_ref().map(|v| as_int(v)), Some(1));
        assert!(matches!(
            events[1].2.as_deref(),
            Some(Stored::Plain(Value::Bytes(b))) if b.len() == 10_000
        ));
        assert_eq!(events[2].2.as_ref().map(|v| as_int(v)), Some(5));
        assert_eq!(
            events[4].2.as_ref().map(|v| as_int(v)),
            Some(1),
            "the removed value"
        );
        wait_for("the expiry", || {
            seen.any(|(k, key, _)| *k == EventKind::Expire && key == "t")
        });
        assert_eq!(get_int(&a, "t"), None);

        // Locks across the two.
        a.try_lock("l", Holder::Beam(1)).unwrap().unwrap();
        assert!(b.try_lock("l", Holder::Beam(2)).unwrap().is_err());
        assert!(a.unlock("l", Holder::Beam(1)).unwrap());
        wait_for("the release reaches b", || {
            seen.released().iter().any(|k| k == "l")
        });
        b.try_lock("l", Holder::Beam(2)).unwrap().unwrap();

        assert_eq!(a.clear().unwrap(), 2);
        assert_eq!(b.len().unwrap(), 0);
        a.destroy();
        b.destroy();
    }
}

#[test]
fn a_dict_follows_its_slot_to_another_node_losing_nothing() {
    let cluster = TestCluster::start();
    let name = name_where(&cluster, cluster.ports[0], true);
    let slot = cluster.slot(&format!("{{c:{name}}}"));
    let (
        a,
        Parts {
            shared: a_shared, ..
        },
    ) = cluster_node(&cluster.url(0), &name);
    let seen = Seen::on(&a, true);
    for i in 0..20 {
        a.put(&format!("k{i}"), int(i), None, Condition::Always)
            .unwrap();
    }
    a.try_lock("l", Holder::Beam(1)).unwrap().unwrap();

    // While the slot's keys move (a few at a time), a read finds each key
    // where it is now (ASK), and a write either lands or fails clearly
    // (its keys are split between the two nodes: TRYAGAIN until the
    // deadline).
    let mut acked = Vec::new();
    let mut n = 0;
    cluster.migrate(slot, cluster.ports[0], cluster.ports[1], || {
        for i in 0..20 {
            assert_eq!(get_int(&a, &format!("k{i}")), Some(i), "mid-migration read");
        }
        let key = format!("m{n}");
        match a.put(&key, int(n), None, Condition::Always) {
            Ok(_) => acked.push((key, n)),
            Err(DictError::Backend(why)) => assert!(why.contains("slot is moving"), "{why}"),
            Err(other) => panic!("{other:?}"),
        }
        n += 1;
    });
    assert!(n > 0, "the test ran mid-migration");
    a.put("after", int(1), None, Condition::Always).unwrap();

    assert!(a_shared
        .pool
        .url()
        .contains(&format!(":{}", cluster.ports[1])));
    for i in 0..20 {
        assert_eq!(get_int(&a, &format!("k{i}")), Some(i));
    }
    for (key, v) in &acked {
        assert_eq!(get_int(&a, key), Some(*v), "an acknowledged write is kept");
    }
    // The lock moved with its slot and is still this holder's.
    assert!(a.unlock("l", Holder::Beam(1)).unwrap());
    // Every event once, in order, across the move.
    let want = 20 + acked.len() + 1;
    wait_for("every event", || seen.len() >= want);
    let events = seen.items();
    assert_eq!(events.len(), want);
    assert_eq!(events.last().map(|e| e.1.as_str()), Some("after"));
    a.destroy();
}

/// `INFO replication`'s `field:` value on the node at `port`.
fn replication(cluster: &TestCluster, port: u16, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut cluster.try_conn(port)?)
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
}

#[test]
fn a_dict_carries_on_on_the_promoted_replica_when_its_master_dies() {
    let mut cluster = TestCluster::start_with(3, 1);
    let name = "failover";
    let slot = cluster.slot(&format!("{{c:{name}}}"));
    wait_for("the slot's replica joined", || {
        cluster.nodes_of(slot, cluster.ports[0]).len() >= 2
    });
    let nodes = cluster.nodes_of(slot, cluster.ports[0]);
    let (master, replica) = (nodes[0], nodes[1]);
    wait_for("the replica is in sync", || {
        replication(&cluster, replica, "master_link_status").as_deref() == Some("up")
    });
    // Every node is a seed; the dict's master is the first.
    let mut seeds = vec![format!("redis://127.0.0.1:{master}/")];
    seeds.extend(
        cluster
            .ports
            .iter()
            .filter(|p| **p != master)
            .map(|p| format!("redis://127.0.0.1:{p}/")),
    );
    let (a, _) = cluster_node(&seeds.join(" "), name);
    let seen = Seen::on(&a, true);
    for i in 0..10 {
        a.put(&format!("k{i}"), int(i), None, Condition::Always)
            .unwrap();
    }
    // Replication is asynchronous: wait until the replica has it all, so
    // the test checks the dict, not Redis's own window of loss.
    wait_for("the replica caught up", || {
        let m = replication(&cluster, master, "master_repl_offset");
        m.is_some() && replication(&cluster, replica, "slave_repl_offset") == m
    });

    cluster.kill(master);
    // Operations fail (never hang) until the replica takes over, then work
    // again by themselves.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match a.put("after", int(1), None, Condition::Always) {
            Ok(_) => break,
            Err(DictError::Backend(_)) if Instant::now() < deadline => {}
            Err(e) => panic!("no recovery: {e:?}"),
        }
    }
    assert_eq!(
        replication(&cluster, replica, "role").as_deref(),
        Some("master")
    );
    for i in 0..10 {
        assert_eq!(get_int(&a, &format!("k{i}")), Some(i));
    }
    // The event thread followed too: every event once, in order.
    wait_for("every event", || seen.len() >= 11);
    let events = seen.items();
    assert_eq!(events.len(), 11);
    assert_eq!(events.last().map(|e| e.1.as_str()), Some("after"));
    a.destroy();
}
