//! Batched writes ([`super::batch`]) against a real `redis-server`: each
//! writer of a batch gets its own answer and its own event, exactly once,
//! on every node. Batches are formed deterministically: the test holds the
//! batcher (as if its batches were all in flight), waits until the writers
//! it started have queued, then lets the batch go.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::batch::Batcher;
use super::test_support::{answered, int, node, put_later, until, Parts, Seen, TestServer};
use crate::convert::Value;
use crate::shared_dict::{
    Condition, DictError, EventKind, Expiry, Now, PutDone, SharedDict, Stored, Ttl,
};

/// A node of the dict `name` on `url`, its batcher, and a listener that
/// asks for the values events carry.
fn node_seen(url: &str, name: &str) -> (Arc<SharedDict>, Parts, Arc<Seen>) {
    let (d, parts) = node(url, name);
    let seen = Seen::on(&d, true);
    (d, parts, seen)
}

#[test]
fn concurrent_put_new_in_one_batch_gives_each_key_one_winner_and_one_event() {
    let server = TestServer::start();
    let (a, Parts { batcher, .. }, seen_a) = node_seen(&server.url(), "b1");
    let (_b, _, seen_b) = node_seen(&server.url(), "b1");

    batcher.hold();
    let (sent, writes) = (
        batcher.sent.load(Ordering::SeqCst),
        batcher.writes.load(Ordering::SeqCst),
    );
    let writers: Vec<_> = (0..64)
        .map(|i| {
            let a = a.clone();
            std::thread::spawn(move || {
                let key = format!("k{}", i % 8);
                (key.clone(), i, a.put(&key, int(i), None, Condition::Absent))
            })
        })
        .collect();
    until("64 writers queued", || batcher.queued() == 64);
    batcher.release();
    let results: Vec<_> = writers
        .into_iter()
        .map(|w| w.join().expect("writer"))
        .collect();
    assert_eq!(
        batcher.sent.load(Ordering::SeqCst) - sent,
        1,
        "one script call"
    );
    assert_eq!(batcher.writes.load(Ordering::SeqCst) - writes, 64);

    let mut winners: HashMap<String, i64> = HashMap::new();
    for (key, i, out) in results {
        match out {
            Ok(_) => assert!(winners.insert(key, i).is_none(), "two winners"),
            Err(DictError::Exists) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(winners.len(), 8, "one :ok per key");
    for (key, i) in &winners {
        let (item, _) = a.get(key).unwrap().expect("written");
        assert!(matches!(&*item, Stored::Plain(Value::Int(v)) if v == i));
    }
    // The writing node raised its events before the writes returned; the
    // other node gets the same ones.
    for seen in [&seen_a, &seen_b] {
        until("8 events", || seen.len() >= 8);
        let mut got: Vec<_> = seen.ints();
        got.sort_by(|x, y| x.1.cmp(&y.1));
        let mut want: Vec<_> = winners
            .iter()
            .map(|(k, i)| (EventKind::Put, k.clone(), Some(*i)))
            .collect();
        want.sort_by(|x, y| x.1.cmp(&y.1));
        assert_eq!(got, want, "each winner's event, once");
    }
    assert_eq!(a.stats().unwrap().puts, 8);
    a.destroy();
}

#[test]
fn free_running_concurrent_writers_each_get_their_event_once() {
    let server = TestServer::start();
    let (a, Parts { batcher, .. }, seen_a) = node_seen(&server.url(), "b2");
    let (_b, _, seen_b) = node_seen(&server.url(), "b2");
    let writers: Vec<_> = (0..16)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let key = format!("k{}", (t + i) % 5);
                    a.put(&key, int(t * 1000 + i), None, Condition::Always)
                        .expect("put");
                    if i % 10 == 9 {
                        a.take(&key).expect("take");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let puts = seen_a
        .ints()
        .iter()
        .filter(|e| e.0 == EventKind::Put)
        .count();
    assert_eq!(puts, 16 * 50, "every put raised once before it returned");
    let deletes = seen_a
        .ints()
        .iter()
        .filter(|e| e.0 == EventKind::Delete)
        .count();
    until("the other node has them all", || {
        seen_b.len() == puts + deletes
    });
    assert_eq!(seen_b.ints(), seen_a.ints(), "same events, same order");
    let sent = batcher.sent.load(Ordering::SeqCst);
    assert!(sent > 0 && batcher.writes.load(Ordering::SeqCst) >= sent);
    a.destroy();
}

/// One writer's step in [`in_one_batch`].
type Step<T> = Box<dyn FnOnce(&Arc<SharedDict>) -> T + Send>;

/// Runs each of `steps` on a thread of its own, queued in this order
/// behind a held batch (each joins once the one before it did), then lets
/// them go as one batch; their answers, in order.
fn in_one_batch<T: Send + 'static>(
    a: &Arc<SharedDict>,
    batcher: &Batcher,
    steps: Vec<Step<T>>,
) -> Vec<T> {
    batcher.hold();
    let mut writers = Vec::new();
    for (n, step) in steps.into_iter().enumerate() {
        let a = a.clone();
        writers.push(std::thread::spawn(move || step(&a)));
        until("queued", || batcher.queued() == n + 1);
    }
    batcher.release();
    writers
        .into_iter()
        .map(|w| w.join().expect("writer"))
        .collect()
}

#[test]
fn a_batch_applies_its_writes_in_order_each_with_its_own_answer() {
    let server = TestServer::start();
    let (a, Parts { batcher, .. }, seen) = node_seen(&server.url(), "b3");
    let v1 = a.put("k", int(1), None, Condition::Always).unwrap();
    seen.clear();

    let steps: Vec<Step<String>> = vec![
        Box::new(|d| format!("{:?}", d.put("k", int(2), None, Condition::Absent))),
        Box::new(|d| format!("{:?}", d.take("k").map(|v| v.is_some()))),
        Box::new(|d| format!("{:?}", d.put("k", int(3), None, Condition::Absent).is_ok())),
        Box::new(move |d| {
            format!(
                "{:?}",
                d.put("k", int(4), None, Condition::Version(Some(v1)))
            )
        }),
        Box::new(|d| format!("{:?}", d.take("missing").map(|v| v.is_some()))),
        Box::new(|d| {
            format!(
                "{:?}",
                d.put("t", int(5), Some(60_000), Condition::Always).is_ok()
            )
        }),
    ];
    let sent = batcher.sent.load(Ordering::SeqCst);
    let answers = in_one_batch(&a, &batcher, steps);
    assert_eq!(
        batcher.sent.load(Ordering::SeqCst) - sent,
        1,
        "one script call"
    );
    assert_eq!(
        answers,
        [
            "Err(Exists)",
            "Ok(true)",
            "true",
            "Err(Conflict)",
            "Ok(false)",
            "true"
        ]
    );
    let got = seen.ints();
    assert_eq!(
        got,
        [
            (EventKind::Delete, "k".to_owned(), Some(1)),
            (EventKind::Put, "k".to_owned(), Some(3)),
            (EventKind::Put, "t".to_owned(), Some(5)),
        ]
    );
    assert!(a.ttl("t").unwrap().is_some());
    a.destroy();
}

#[test]
fn in_one_batch_a_ttl_put_then_a_plain_put_leaves_no_expiry_and_versions_grow() {
    let server = TestServer::start();
    // A fresh dict: no key has an expiry yet, so the batch's script starts
    // without the expiry set (the case it skips the expired-key lookup for).
    let (a, Parts { batcher, .. }, _seen) = node_seen(&server.url(), "bttl");
    let steps: Vec<Step<Result<u64, DictError>>> = vec![
        Box::new(|d| d.put("k", int(1), Some(60_000), Condition::Always)),
        Box::new(|d| d.put("k", int(9), None, Condition::Absent)),
        Box::new(|d| d.put("k", int(2), None, Condition::Always)),
    ];
    let answers = in_one_batch(&a, &batcher, steps);
    let (Ok(v1), Err(DictError::Exists), Ok(v2)) = (&answers[0], &answers[1], &answers[2]) else {
        panic!("unexpected answers {answers:?}");
    };
    assert!(v2 > v1, "versions grow within a batch: {v1} then {v2}");
    // The plain put removed the expiry the first one set, in Redis and in
    // the dict's expiry set (else the reaper would remove the key later).
    assert!(matches!(a.ttl("k"), Ok(Some(Ttl::Infinity))));
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg("{t:bttl}:exp")
        .arg("k")
        .query(&mut server.conn())
        .expect("zscore");
    assert_eq!(score, None);
    a.destroy();
}

#[test]
fn a_batch_that_fails_fails_for_each_writer_and_the_dict_recovers() {
    let mut server = TestServer::start();
    let (a, Parts { batcher, .. }, _) = node_seen(&server.url(), "b4");
    a.put("k", int(0), None, Condition::Always).unwrap();
    batcher.hold();
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let a = a.clone();
            std::thread::spawn(move || a.put(&format!("k{i}"), int(i), None, Condition::Always))
        })
        .collect();
    until("4 writers queued", || batcher.queued() == 4);
    server.kill();
    batcher.release();
    for w in writers {
        match w.join().expect("writer") {
            Err(DictError::Backend(_)) => {}
            other => panic!("expected a backend error, got {other:?}"),
        }
    }
    server.restart();
    until("writes again", || {
        a.put("k", int(1), None, Condition::Always).is_ok()
    });
    let (item, _) = a.get("k").unwrap().expect("there");
    assert!(matches!(&*item, Stored::Plain(Value::Int(1))));
    a.destroy();
}

#[test]
fn queued_writes_join_the_batch_behind_the_one_in_flight_each_answered() {
    let server = TestServer::start();
    let (a, Parts { batcher, .. }, seen) = node_seen(&server.url(), "b5");
    // Nothing on its way: not queued, the caller sends it itself.
    assert!(put_later(&a, "k", 0, Condition::Always).is_none());

    batcher.hold();
    let sent = batcher.sent.load(Ordering::SeqCst);
    let waits = {
        let a = a.clone();
        std::thread::spawn(move || a.put("k", int(1), None, Condition::Absent))
    };
    until("the waiting writer queued", || batcher.queued() == 1);
    let exists = put_later(&a, "k", 2, Condition::Absent).expect("queued");
    let other = put_later(&a, "j", 3, Condition::Always).expect("queued");
    let conflict = put_later(&a, "k", 4, Condition::Version(None)).expect("queued");
    assert_eq!(batcher.queued(), 4, "all in the one forming batch");
    batcher.release();

    assert!(waits.join().expect("writer").is_ok());
    assert_eq!(answered(&exists), Err(DictError::Exists));
    assert!(answered(&other).is_ok());
    assert_eq!(answered(&conflict), Err(DictError::Conflict));
    assert_eq!(
        batcher.sent.load(Ordering::SeqCst) - sent,
        1,
        "one script call"
    );
    // Answered once this node raised the events.
    assert_eq!(
        seen.ints(),
        [
            (EventKind::Put, "k".to_owned(), Some(1)),
            (EventKind::Put, "j".to_owned(), Some(3)),
        ]
    );

    // A queued write accepted before the dict is closed is still sent and
    // answered.
    batcher.hold();
    let late = put_later(&a, "z", 9, Condition::Always).expect("queued");
    a.destroy();
    batcher.release();
    assert!(answered(&late).is_ok());
    let (b, _, _) = node_seen(&server.url(), "b5");
    let (item, _) = b.get("z").unwrap().expect("written");
    assert!(matches!(&*item, Stored::Plain(Value::Int(9))));
    b.destroy();
}

#[test]
fn a_first_ttl_put_queued_behind_a_batch_watches_the_dict_and_raises_its_expiry() {
    let server = TestServer::start();
    let (a, Parts { batcher, .. }, seen) = node_seen(&server.url(), "b6");
    assert!(
        !a.swept.load(Ordering::SeqCst),
        "no key with an expiry yet: not watched"
    );

    batcher.hold();
    let (tx, rx) = std::sync::mpsc::channel();
    let done: PutDone = Box::new(move |out| {
        let _ = tx.send(out);
    });
    let now = crate::shared_dict::now_ms();
    let expiry = Expiry::At(now + 50);
    assert!(
        a.put_later("t", int(7), expiry, Condition::Always, &Now::at(now), done),
        "queued behind the held batch"
    );
    assert_eq!(batcher.queued(), 1);
    // Watched as soon as the put is queued, as a put that waits is.
    assert!(
        a.swept.load(Ordering::SeqCst),
        "the queued TTL'd put watches the dict"
    );
    batcher.release();
    assert!(answered(&rx).is_ok());

    until("the key's expire event", || {
        seen.ints()
            .iter()
            .any(|e| e.0 == EventKind::Expire && e.1 == "t")
    });
    assert!(a.get("t").unwrap().is_none());
    assert_eq!(a.stats().unwrap().expired_total, 1);
    a.destroy();
}
