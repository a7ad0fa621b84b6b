//! A node where nothing listens (no listener, no telemetry, no lock
//! contended there) reads no events off the stream, and its `stats` still
//! counts every node's writes and expiries, from when it opened: the
//! scripts count them in Redis ([`super::counts`]). Against a real
//! `redis-server`; the stream reads are Redis's own count of `XREAD` calls.

use std::sync::Arc;

use super::test_support::{int, node, until, Seen, TestServer};
use crate::shared_dict::{Condition, EventKind};

/// How many `XREAD` calls the server has answered.
fn xreads(server: &TestServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.conn())
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_xread:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_node_nothing_listens_on_reads_no_events_and_counts_every_nodes_writes() {
    let server = TestServer::start();
    let (a, _) = node(&server.url(), "q1");
    let (b, _) = node(&server.url(), "q1");

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
    assert_eq!(xreads(&server), 0, "nothing listened: no events were read");

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
    assert!(xreads(&server) > 0);
    for d in [a, b, c] {
        d.destroy();
    }
}
