//! Writes that nothing on their node hears of (no listener that wants
//! events, no telemetry), against a real `redis-server`: they return
//! without waiting for their node to raise their events, a listener added
//! afterwards never hears of them, `stats` still counts them (every
//! node's, from Redis), and every other node raises them as usual.
//!
//! With latches, not a clock: the test holds the writer's follower (the
//! lock it records its progress under: it cannot get past its current
//! step); the writes must return meanwhile, and a listener added
//! meanwhile, after they returned, must not hear of them once the
//! follower goes on (and reads, as something then listens).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::MutexGuard;

use super::test_support::{
    answered, int, node, put_later, until, waiting, Parts, Seen, TestServer,
};
use super::Shared;
use crate::shared_dict::{Condition, EventKind, SharedDict};

fn ev(kind: EventKind, key: &str) -> (EventKind, String) {
    (kind, key.to_owned())
}

/// Holds `a`'s follower: locks what it records its progress under (it
/// waits there at the end of its current step until the guard is
/// dropped), then writes from `b` (another node, which raises it).
fn hold_follower<'s>(shared: &'s Shared, b: &Arc<SharedDict>) -> MutexGuard<'s, (u64, u64)> {
    let held = shared.raised.lock();
    b.put("w0", int(0), None, Condition::Always).unwrap();
    held
}

/// What `seen` heard of the writing node's own writes. It may also hear of
/// `b`'s `w0`, written before it listened: a follower that read nothing
/// while nothing listened reads on from its place, which is at most one
/// pause old (held here, it is older).
fn own(seen: &Seen) -> Vec<(EventKind, String)> {
    seen.heard()
        .into_iter()
        .filter(|(_, k)| k != "w0")
        .collect()
}

/// `f`'s result, run on another thread: it must come while this one holds
/// a follower (a write that waited for it would never return).
fn returns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    waiting(f)
        .recv_timeout(Duration::from_secs(10))
        .expect("returned while its node raised nothing")
}

#[test]
fn a_write_nothing_hears_of_returns_at_once_and_a_later_listener_never_hears_it() {
    let server = TestServer::start();
    let (
        a,
        Parts {
            shared: shared_a, ..
        },
    ) = node(&server.url(), "u1");
    let (b, _) = node(&server.url(), "u1");
    let seen_b = Arc::new(Seen::default());
    b.listen(seen_b.clone()).unwrap();

    let held = hold_follower(&shared_a, &b);
    let writes = {
        let a = a.clone();
        returns(move || {
            (
                a.put("k", int(1), None, Condition::Always),
                a.take("k"),
                a.put("k", int(2), None, Condition::Always),
                a.incr("n", 1),
            )
        })
    };
    assert!(writes.0.is_ok() && writes.2.is_ok() && writes.3.is_ok());
    assert!(writes.1.expect("taken").is_some());
    // Added after they returned, before its node read them: hears none of
    // them, only what follows.
    let seen_a = Arc::new(Seen::default());
    a.listen(seen_a.clone()).unwrap();
    drop(held);

    // Every write that returned is counted (b's included).
    let stats = a.stats().unwrap();
    assert_eq!((stats.puts, stats.deletes), (4, 1));

    a.put("j", int(3), None, Condition::Always).unwrap();
    // Heard of: raised before it returned.
    assert_eq!(own(&seen_a), [ev(EventKind::Put, "j")]);
    assert_eq!(a.stats().unwrap().puts, 5);

    // Another node (another dict in this same OS process) raises them all,
    // in order.
    until("b raised all six", || seen_b.heard().len() == 6);
    assert_eq!(
        seen_b.heard(),
        [
            ev(EventKind::Put, "w0"),
            ev(EventKind::Put, "k"),
            ev(EventKind::Delete, "k"),
            ev(EventKind::Put, "k"),
            ev(EventKind::Put, "n"),
            ev(EventKind::Put, "j"),
        ]
    );
    assert_eq!(shared_a.events_missed.load(Ordering::Relaxed), 0);
    a.destroy();
    b.destroy();
}

#[test]
fn a_queued_put_nothing_hears_of_is_answered_at_once_and_never_heard() {
    let server = TestServer::start();
    let (
        a,
        Parts {
            shared: shared_a,
            batcher,
            ..
        },
    ) = node(&server.url(), "u2");
    let (b, _) = node(&server.url(), "u2");
    let seen_b = Arc::new(Seen::default());
    b.listen(seen_b.clone()).unwrap();

    // Queued behind a batch "in flight", then sent by the batcher's thread.
    batcher.hold();
    let rx = put_later(&a, "k", 1, Condition::Always).expect("queued");
    let held = hold_follower(&shared_a, &b);
    let answer = returns(move || {
        batcher.release();
        answered(&rx)
    });
    assert!(answer.is_ok());
    let seen_a = Arc::new(Seen::default());
    a.listen(seen_a.clone()).unwrap();
    drop(held);
    assert_eq!(a.stats().unwrap().puts, 2);

    a.put("j", int(2), None, Condition::Always).unwrap();
    assert_eq!(own(&seen_a), [ev(EventKind::Put, "j")]);
    until("b raised all three", || seen_b.heard().len() == 3);
    assert_eq!(
        seen_b.heard(),
        [
            ev(EventKind::Put, "w0"),
            ev(EventKind::Put, "k"),
            ev(EventKind::Put, "j")
        ]
    );
    a.destroy();
    b.destroy();
}
