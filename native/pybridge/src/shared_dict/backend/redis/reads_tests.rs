//! Shared reads ([`super::reads`]) against a real `redis-server`: each
//! reader of a shared round trip gets its own key's value, never an
//! expired one, and an error (not a hang, not "missing") when Redis is
//! down. Batches are formed deterministically: the test holds the reader
//! (as if a read were in flight), waits until the readers it started have
//! queued, then lets the batch go.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::test_support::{get_later, int, int_of, node, until, Parts, TestServer};
use crate::convert::Value;
use crate::shared_dict::{Condition, DictError, Stored};

#[test]
fn concurrent_gets_share_one_round_trip_and_each_gets_its_own_value() {
    let server = TestServer::start();
    let (d, Parts { reader, .. }) = node(&server.url(), "r1");
    const N: i64 = 40;
    for i in 0..N {
        d.put(&format!("k{i}"), int(i * 10), None, Condition::Always)
            .unwrap();
    }
    // Nothing on its way: a get is not queued, it reads alone.
    assert!(!d.would_queue_get());
    assert_eq!(int_of(&d.get("k3").unwrap()), Some(30));

    reader.hold();
    assert!(d.would_queue_get());
    let sent = reader.sent.load(Ordering::Relaxed);
    // Half blocking readers (threads), half readers that do not wait.
    let threads: Vec<_> = (0..N / 2)
        .map(|i| {
            let d = d.clone();
            std::thread::spawn(move || int_of(&d.get(&format!("k{i}")).unwrap()))
        })
        .collect();
    let later: Vec<_> = (N / 2..N)
        .map(|i| (i, get_later(&d, &format!("k{i}"))))
        .collect();
    let missing = get_later(&d, "nope");
    until("every reader queued", || reader.queued() == N as usize + 1);
    reader.release();

    for (i, t) in threads.into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), Some(i as i64 * 10));
    }
    for (i, rx) in later {
        let got = rx.recv().unwrap().expect("read").expect("no error");
        assert_eq!(int_of(&got), Some(i * 10));
    }
    assert!(matches!(missing.recv().unwrap(), Some(Ok(None))));
    // One call for all of them.
    assert_eq!(reader.sent.load(Ordering::Relaxed), sent + 1);
    d.destroy();
}

#[test]
fn a_shared_read_never_returns_an_expired_value() {
    let server = TestServer::start();
    let (d, Parts { reader, .. }) = node(&server.url(), "r2");
    d.put("short", int(1), Some(50), Condition::Always).unwrap();
    d.put("long", int(2), Some(600_000), Condition::Always)
        .unwrap();
    d.put("plain", int(3), None, Condition::Always).unwrap();
    reader.hold();
    let short = get_later(&d, "short");
    let long = get_later(&d, "long");
    let plain = get_later(&d, "plain");
    // The key's expiry has passed on Redis's clock (PTTL reads its clock
    // and, for an expired key, answers -2) before the batch goes.
    let mut c = server.conn();
    until("short expired on the server", || {
        redis::cmd("PTTL")
            .arg("{t:r2}:v:short")
            .query::<i64>(&mut c)
            .unwrap()
            == -2
    });
    let blocking = {
        let d = d.clone();
        std::thread::spawn(move || d.get("short").unwrap().is_none())
    };
    until("every reader queued", || reader.queued() == 4);
    reader.release();
    assert!(matches!(short.recv().unwrap(), Some(Ok(None))));
    assert!(blocking.join().unwrap());
    let long = long.recv().unwrap().unwrap().unwrap();
    assert_eq!(int_of(&long), Some(2));
    assert_eq!(int_of(&plain.recv().unwrap().unwrap().unwrap()), Some(3));
    assert!(matches!(d.ttl("short"), Ok(None)));
    d.destroy();
}

#[test]
fn shared_reads_answer_an_error_when_redis_is_down() {
    let mut server = TestServer::start();
    let (d, Parts { reader, .. }) = node(&server.url(), "r3");
    d.put("a", int(1), None, Condition::Always).unwrap();
    reader.hold();
    let later = get_later(&d, "a");
    let blocking = {
        let d = d.clone();
        std::thread::spawn(move || d.get("a"))
    };
    until("both readers queued", || reader.queued() == 2);
    server.kill();
    reader.release();
    assert!(matches!(
        later.recv().unwrap(),
        Some(Err(DictError::Backend(_)))
    ));
    assert!(matches!(
        blocking.join().unwrap(),
        Err(DictError::Backend(_))
    ));
    // Down, nothing on its way: each get answers an error at once.
    for _ in 0..100 {
        assert!(matches!(d.get("a"), Err(DictError::Backend(_))));
    }
    server.restart();
    until("answers again", || d.get("a").is_ok());
    assert_eq!(int_of(&d.get("a").unwrap()), Some(1));
}

#[test]
fn a_value_too_big_to_share_the_reply_is_read_alone() {
    let server = TestServer::start();
    let (d, Parts { reader, .. }) = node(&server.url(), "r4");
    // Two values of 700 kB: the second does not fit the reply's budget
    // (1 MB) after the first.
    let big = |c: u8| Stored::Plain(Value::Bytes(vec![c; 700 << 10]));
    d.put("x", big(b'x'), None, Condition::Always).unwrap();
    d.put("y", big(b'y'), None, Condition::Always).unwrap();
    reader.hold();
    let readers: Vec<_> = ["x", "y"]
        .into_iter()
        .map(|k| {
            let d = d.clone();
            std::thread::spawn(move || d.get(k).unwrap().map(|(item, _)| item))
        })
        .collect();
    let later = get_later(&d, "y");
    until("every reader queued", || reader.queued() == 3);
    reader.release();
    for (reader, c) in readers.into_iter().zip([b'x', b'y']) {
        let item = reader.join().unwrap().expect("found");
        assert!(
            matches!(&*item, Stored::Plain(Value::Bytes(b)) if b.len() == 700 << 10 && b[0] == c)
        );
    }
    // The one that does not wait is told to read it alone (at most one of
    // the two fits, and which one depends on the order they queued in).
    match later.recv().unwrap() {
        None => assert!(d.get("y").unwrap().is_some()),
        Some(Ok(Some((item, _)))) => {
            assert!(matches!(&*item, Stored::Plain(Value::Bytes(b)) if b[0] == b'y'))
        }
        other => panic!("{other:?}"),
    }
    d.destroy();
}

/// A gate a test opens: those that wait on it go on once it is open.
#[derive(Default)]
struct Gate {
    open: parking_lot::Mutex<bool>,
    cv: parking_lot::Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock();
        while !*open {
            self.cv.wait(&mut open);
        }
    }

    fn open(&self) {
        *self.open.lock() = true;
        self.cv.notify_all();
    }
}

#[test]
fn a_lone_get_reading_a_big_value_lets_other_gets_go_meanwhile() {
    let server = TestServer::start();
    let (d, Parts { reader, .. }) = node(&server.url(), "r5");
    let len = super::big::BIG + 1;
    d.put(
        "big",
        Stored::Plain(Value::Bytes(vec![b'b'; len])),
        None,
        Condition::Always,
    )
    .unwrap();
    d.put("small", int(7), None, Condition::Always).unwrap();
    // The big value's own GET waits at the gate, and says it started.
    let gate = Arc::new(Gate::default());
    let (started_tx, started) = mpsc::channel();
    let started_tx = parking_lot::Mutex::new(started_tx);
    *reader.big_hook.lock() = Some({
        let gate = gate.clone();
        Arc::new(move || {
            let _ = started_tx.lock().send(());
            gate.wait();
        })
    });
    let big = {
        let d = d.clone();
        std::thread::spawn(move || d.get("big").unwrap().map(|(item, _)| item))
    };
    started
        .recv_timeout(Duration::from_secs(10))
        .expect("the big read started");
    // While it is read, its turn is back: a get goes at once, alone, and
    // is answered.
    assert!(!d.would_queue_get(), "nothing in flight");
    let small = {
        let d = d.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(int_of(&d.get("small").unwrap()));
        });
        rx
    };
    assert_eq!(
        small.recv_timeout(Duration::from_secs(10)),
        Ok(Some(7)),
        "the small get came back while the big value was read"
    );
    gate.open();
    let item = big.join().unwrap().expect("found");
    assert!(matches!(&*item, Stored::Plain(Value::Bytes(b)) if b.len() == len && b[0] == b'b'));
    d.destroy();
}
