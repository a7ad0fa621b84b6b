//! A node where nothing listens (no listener, no telemetry, no lock
//! contended there) reads no events off the stream, and its `stats` still
//! counts every node's writes and expiries, from when it opened: the
//! scripts count them in Redis ([`super::counts`]); an idle dict costs it
//! one blocked read per 100 ms. Against a real `redis-server`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::test_support::{int, node, until, Seen, TestServer};
use crate::shared_dict::{Condition, EventKind};

/// How many calls of `command` the server has answered.
fn calls(server: &TestServer, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.conn())
        .expect("INFO");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_node_nothing_listens_on_reads_no_events_and_counts_every_nodes_writes() {
    let server = TestServer::start();
    let (a, pa) = node(&server.url(), "q1");
    let (b, pb) = node(&server.url(), "q1");
    let read = || {
        [&pa, &pb]
            .map(|p| p.shared.entries_read.load(Ordering::Relaxed))
            .iter()
            .sum::<u64>()
    };

    for i in 0..150 {
        a.put(&format!("a{i}"), int(i), None, Condition::Always)
            .unwrap();
        b.put(&format!("b{i}"), int(i), None, Condition::Always)
            .unwrap();
    }
    assert!(a.take("a0").unwrap().is_some());
    b.put("t", int(1), Some(1), Condition::Always).unwrap();
    // Some node's reaper claims the expired key (once) within ~100 ms.
    until("the expiry is counted", || {
        a.stats().unwrap().expired_total == 1
    });
    assert_eq!(read(), 0, "nothing listened: no events were read");

    // Idle: once both followers are at the stream's end, no write, so no
    // follower looks for the end again (XINFO); each only waits in a
    // blocked read (100 ms each), not a poll.
    let last: Vec<(String, redis::Value)> = redis::cmd("XREVRANGE")
        .arg(&pa.shared.keys.ev)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(&mut server.conn())
        .expect("XREVRANGE");
    let end = {
        let (ms, seq) = last[0].0.split_once('-').expect("an id");
        (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
    };
    until("both followers at the end", || {
        [&pa, &pb].iter().all(|p| *p.shared.raised.lock() >= end)
    });
    let (xinfo, xread) = (calls(&server, "xinfo"), calls(&server, "xread"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(calls(&server, "xinfo"), xinfo, "idle: nothing looked up");
    assert!(
        calls(&server, "xread") - xread <= 2 * 6,
        "idle: at most one blocked read per 100 ms per node"
    );

    for d in [&a, &b] {
        let stats = d.stats().unwrap();
        assert_eq!(
            (stats.puts, stats.deletes, stats.expired_total),
            (301, 1, 1)
        );
        let [(key, ms)] = &stats.recent_expiries[..] else {
            panic!("one recent expiry: {:?}", stats.recent_expiries);
        };
        assert_eq!(key, "t");
        // Dated by Redis's clock, in Unix ms (same host here).
        let wall = crate::shared_dict::clock::wall_ms();
        assert!(ms.abs_diff(wall) < 60_000, "{ms} vs {wall}");
    }

    // A handle opened later counts from then on.
    let (c, _) = node(&server.url(), "q1");
    assert_eq!(c.stats().unwrap().puts, 0);
    b.put("late", int(0), None, Condition::Always).unwrap();
    assert_eq!(c.stats().unwrap().puts, 1);
    assert_eq!(a.stats().unwrap().puts, 302);

    // Once something listens on a, its follower reads: it hears of b's
    // writes that came after it subscribed.
    let seen = Arc::new(Seen::default());
    a.listen(seen.clone()).unwrap();
    b.put("heard", int(0), None, Condition::Always).unwrap();
    until("a heard b's write", || {
        seen.heard().contains(&(EventKind::Put, "heard".to_owned()))
    });
    assert!(read() > 0);
    for d in [a, b, c] {
        d.destroy();
    }
}
