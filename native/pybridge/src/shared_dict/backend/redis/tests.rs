//! The Redis backend against a real `redis-server` (started by
//! [`TestServer`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::test_support::{free_port, get_int, int, node, until, Parts, Seen, TestServer};
use super::Redis;
use crate::convert::Value;
use crate::shared_dict::{Condition, DictError, EventKind, Holder, Stored, Ttl};

#[test]
fn two_nodes_see_each_others_writes_and_every_event_once() {
    let server = TestServer::start();
    let (a, _) = node(&server.url(), "d1");
    let (b, _) = node(&server.url(), "d1");
    let seen_a = Arc::new(Seen::default());
    let seen_b = Arc::new(Seen::default());
    a.listen(seen_a.clone()).unwrap();
    b.listen(seen_b.clone()).unwrap();

    a.put("k", int(1), None, Condition::Always).unwrap();
    // A write's own node has raised its event when the write returns.
    assert_eq!(seen_a.len(), 1);
    assert_eq!(a.stats().unwrap().puts, 1);
    assert_eq!(get_int(&b, "k"), Some(1), "b reads a's write at once");
    let v = b.put("k", int(2), None, Condition::Always).unwrap();
    assert_eq!(get_int(&a, "k"), Some(2));
    assert_eq!(a.get("k").unwrap().unwrap().1, v, "one version on both");
    assert_eq!(
        a.put("k", int(3), None, Condition::Absent),
        Err(DictError::Exists)
    );
    assert_eq!(
        a.put("k", int(3), None, Condition::Version(Some(v - 1))),
        Err(DictError::Conflict)
    );
    a.put("k", int(3), None, Condition::Version(Some(v)))
        .unwrap();
    assert!(matches!(b.incr("n", 5).unwrap(), Value::Int(5)));
    assert!(matches!(a.incr("n", 2).unwrap(), Value::Int(7)));
    let mut keys: Vec<String> = b.keys().unwrap().iter().map(|k| k.to_string()).collect();
    keys.sort();
    assert_eq!(keys, ["k", "n"]);
    assert_eq!(a.len().unwrap(), 2);
    assert!(b.take("k").unwrap().is_some());
    assert_eq!(get_int(&a, "k"), None);

    // A TTL is a Redis expiry; its event is raised once, on both nodes.
    a.put("t", int(9), Some(150), Condition::Always).unwrap();
    match b.ttl("t").unwrap() {
        Some(Ttl::Ms(ms)) => assert!(ms <= 150),
        other => panic!("ttl {other:?}"),
    }
    let expected = [
        (EventKind::Put, "k"),
        (EventKind::Put, "k"),
        (EventKind::Put, "k"),
        (EventKind::Put, "n"),
        (EventKind::Put, "n"),
        (EventKind::Delete, "k"),
        (EventKind::Put, "t"),
        (EventKind::Expire, "t"),
    ];
    for seen in [&seen_a, &seen_b] {
        until("all events", || seen.len() >= expected.len());
        // A little longer: a second expire event would show now.
        std::thread::sleep(Duration::from_millis(300));
        let got = seen.heard();
        let want: Vec<(EventKind, String)> =
            expected.iter().map(|(k, s)| (*k, s.to_string())).collect();
        assert_eq!(got, want);
    }
    assert_eq!(get_int(&a, "t"), None);
    assert_eq!(a.stats().unwrap().expired_total, 1);
    a.destroy();
    b.destroy();
}

#[test]
fn expire_persist_and_clear() {
    let server = TestServer::start();
    let (a, _) = node(&server.url(), "d2");
    a.put("k", int(1), None, Condition::Always).unwrap();
    assert_eq!(a.ttl("k").unwrap(), Some(Ttl::Infinity));
    assert!(a.expire("k", 60_000).unwrap());
    assert!(matches!(a.ttl("k").unwrap(), Some(Ttl::Ms(ms)) if ms > 50_000));
    let pttl: i64 = redis::cmd("PTTL")
        .arg("{t:d2}:v:k")
        .query(&mut server.conn())
        .unwrap();
    assert!(pttl > 50_000, "the TTL is a Redis expiry: {pttl}");
    assert!(a.persist("k").unwrap());
    assert_eq!(a.ttl("k").unwrap(), Some(Ttl::Infinity));
    assert!(!a.expire("missing", 10).unwrap());
    a.put("j", int(2), Some(60_000), Condition::Always).unwrap();
    assert_eq!(a.clear().unwrap(), 2);
    assert_eq!(a.len().unwrap(), 0);
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("{t:d2}:v:*")
        .query(&mut server.conn())
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn every_key_of_a_dict_is_on_one_hash_slot() {
    let server = TestServer::start();
    let (a, _) = node(&server.url(), "slot");
    a.put("x", int(1), Some(60_000), Condition::Always).unwrap();
    a.put("y", int(1), None, Condition::Always).unwrap();
    a.try_lock("y", Holder::Beam(1)).unwrap().unwrap();
    let mut c = server.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert!(keys.len() >= 6, "{keys:?}");
    for k in &keys {
        assert!(
            k.starts_with("{t:slot}:"),
            "{k} is outside the dict's hash tag"
        );
    }
}

#[test]
fn unreachable_redis_is_an_error_and_the_dict_recovers_after_a_restart() {
    let mut server = TestServer::start();
    // Nothing listens on a fresh free port: open fails clearly.
    let nobody = format!("redis://127.0.0.1:{}/", free_port());
    match Redis::open(&nobody, "t", Some("x"), 1) {
        Err(DictError::Backend(why)) => assert!(why.contains("redis"), "{why}"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("opened a dict on nothing"),
    }

    let (a, _) = node(&server.url(), "d3");
    let (b, _) = node(&server.url(), "d3");
    let seen_b = Arc::new(Seen::default());
    b.listen(seen_b.clone()).unwrap();
    for i in 0..100 {
        a.put(&format!("k{i}"), int(i), None, Condition::Always)
            .unwrap();
    }
    server.kill();
    // Down: every call answers an error, quickly, many times over.
    for _ in 0..1000 {
        match a.get("k1") {
            Err(DictError::Backend(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        a.put("z", int(0), None, Condition::Always),
        Err(DictError::Backend(_))
    ));
    server.restart();
    // Back by itself: every acknowledged write is there (appendfsync always).
    until("a answers again", || a.get("k1").is_ok());
    for i in 0..100 {
        assert_eq!(get_int(&a, &format!("k{i}")), Some(i));
    }
    a.put("after", int(1), None, Condition::Always).unwrap();
    // b's follower reconnected and read on from where it was.
    until("b saw the write after the restart", || {
        seen_b.heard().iter().any(|(_, k)| k == "after")
    });
    let puts = seen_b
        .heard()
        .iter()
        .filter(|(k, _)| *k == EventKind::Put)
        .count();
    assert_eq!(puts, 101, "every put once");
}

#[test]
fn a_follower_that_loses_its_connection_misses_no_event() {
    let server = TestServer::start();
    let (a, _) = node(&server.url(), "d4");
    let (b, _) = node(&server.url(), "d4");
    let seen_b = Arc::new(Seen::default());
    b.listen(seen_b.clone()).unwrap();
    let mut admin = server.conn();
    let mut kills = 0;
    for i in 0..500 {
        a.put(&format!("k{i}"), int(i), None, Condition::Always)
            .unwrap();
        if i % 50 == 0 {
            // Drop the followers' connections (named), nobody else's.
            let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
            for line in list
                .lines()
                .filter(|l| l.contains("name=pybridge-follower"))
            {
                let id = line.split(' ').find_map(|f| f.strip_prefix("id=")).unwrap();
                let n: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(id)
                    .query(&mut admin)
                    .unwrap();
                kills += n;
            }
        }
    }
    assert!(kills >= 10, "the followers were disconnected ({kills})");
    until("500 events", || seen_b.len() >= 500);
    let got: Vec<String> = seen_b.heard().iter().map(|(_, k)| k.clone()).collect();
    let want: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
    assert_eq!(got, want, "every event, once, in order");
}

#[test]
fn locks_work_across_nodes_and_lapse_with_a_dead_holder() {
    let server = TestServer::start();
    let (
        a,
        Parts {
            shared: shared_a, ..
        },
    ) = node(&server.url(), "d5");
    let (b, _) = node(&server.url(), "d5");
    let seen_b = Arc::new(Seen::default());
    b.listen(seen_b.clone()).unwrap();
    let ha = Holder::Beam(1);
    let hb = Holder::Beam(2);
    assert_eq!(a.try_lock("k", ha).unwrap(), Ok(()));
    assert_eq!(a.try_lock("k", ha).unwrap(), Ok(()), "again: still mine");
    assert_eq!(b.try_lock("k", hb).unwrap(), Err(ha), "held by a");
    assert!(!b.unlock("k", hb).unwrap(), "not b's to release");
    assert!(a.unlock("k", ha).unwrap());
    until("b is told of the release", || {
        seen_b.released().contains(&"k".to_owned())
    });
    assert_eq!(b.try_lock("k", hb).unwrap(), Ok(()));
    assert!(b.unlock("k", hb).unwrap());

    // A holder whose node dies: its lease lapses, the release is announced.
    *shared_a.lease.lock() = Duration::from_millis(300);
    assert_eq!(a.try_lock("dead", ha).unwrap(), Ok(()));
    shared_a.held.lock().clear();
    shared_a.closed.store(true, Ordering::Release);
    assert!(b.try_lock("dead", hb).unwrap().is_err());
    // Announced by a reaper when the lease ends (a waiter may take the
    // lock first, and then nothing needs announcing: so look first).
    until("the lapse is announced", || {
        seen_b.released().contains(&"dead".to_owned())
    });
    assert!(b
        .lock_wait("dead", hb, Some(Instant::now() + Duration::from_secs(10)))
        .unwrap());

    // A live holder keeps its lock past the lease (renewed).
    let (
        c,
        Parts {
            shared: shared_c, ..
        },
    ) = node(&server.url(), "d5");
    *shared_c.lease.lock() = Duration::from_millis(1500);
    assert_eq!(c.try_lock("live", Holder::Python(7)).unwrap(), Ok(()));
    // Three leases: only renewals keep it.
    std::thread::sleep(Duration::from_millis(4500));
    assert!(
        b.try_lock("live", hb).unwrap().is_err(),
        "renewed past its lease"
    );
    assert_eq!(c.lock_holder("live"), Some(Holder::Python(7)));
    // Closing the node (destroy) releases what it held.
    c.destroy();
    until("released at close", || {
        b.try_lock("live", hb).unwrap().is_ok()
    });
}

#[test]
fn values_round_trip_through_the_shared_encoding() {
    let server = TestServer::start();
    let (a, _) = node(&server.url(), "d6");
    let (b, _) = node(&server.url(), "d6");
    let v = Value::Map(vec![
        (
            Value::Str("l".into()),
            Value::List(vec![Value::Float(1.5), Value::None]),
        ),
        (
            Value::Bytes(vec![0, 255]),
            Value::Tuple(vec![Value::Bool(true)]),
        ),
    ]);
    a.put("m", Stored::Plain(v.clone()), None, Condition::Always)
        .unwrap();
    let got = b.get("m").unwrap().unwrap().0;
    match &*got {
        Stored::Plain(g) => assert_eq!(format!("{g:?}"), format!("{v:?}")),
        other => panic!("{other:?}"),
    }
    a.put(
        "p",
        Stored::Pickled {
            type_name: "m.C".into(),
            data: vec![1, 2, 3],
        },
        None,
        Condition::Always,
    )
    .unwrap();
    match &*b.get("p").unwrap().unwrap().0 {
        Stored::Pickled { type_name, data } => {
            assert_eq!(
                (type_name.as_str(), data.as_slice()),
                ("m.C", &[1u8, 2, 3][..])
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_trimmed_gap_in_the_stream_is_detected_and_counted() {
    use super::follower::{missed, newest, Position};
    let server = TestServer::start();
    let mut c = server.conn();
    let stream = "{t:gap}:ev";
    assert_eq!(
        newest(&mut c, stream).unwrap(),
        Position {
            id: "0-0".into(),
            seq: 0
        }
    );
    let add = |c: &mut redis::Connection| -> String {
        redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("e")
            .arg("p")
            .arg("k")
            .arg("a")
            .query(c)
            .unwrap()
    };
    let first = add(&mut c);
    let mut pos = newest(&mut c, stream).unwrap();
    assert_eq!(pos, Position { id: first, seq: 1 });
    for _ in 0..3 {
        add(&mut c);
    }
    assert_eq!(
        missed(&mut c, stream, &mut pos.clone()).unwrap(),
        0,
        "nothing trimmed yet"
    );
    let _: i64 = redis::cmd("XTRIM")
        .arg(stream)
        .arg("MAXLEN")
        .arg(1)
        .query(&mut c)
        .unwrap();
    // Entries 2 and 3 are gone unread; 4 is still there.
    assert_eq!(missed(&mut c, stream, &mut pos).unwrap(), 2);
    assert_eq!(pos.seq, 3);
    assert_eq!(missed(&mut c, stream, &mut pos).unwrap(), 0, "counted once");
}
