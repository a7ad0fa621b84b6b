//! A panic in the batcher's thread (`py-dict-redis-w`) or the reader's
//! (`py-dict-redis-r`) outside their `catch_unwind`s, injected by the test
//! ([`super::batch::Batcher::fault`], [`super::reads::Reader::fault`]),
//! against a real `redis-server`: every caller it held or had queued is
//! answered an error (none waits forever), its turn is given back, and the
//! next queued caller starts another thread.

use std::sync::atomic::Ordering;

use super::batch::{FAULT_SENT, FAULT_TAKING};
use super::reads::MAX_KEYS;
use super::test_support::{
    answered, get_later, int, int_of, node, put_later, until, waiting, Parts, TestServer,
};
use crate::shared_dict::{Condition, DictError};

fn is_backend_error<T: std::fmt::Debug>(out: &Result<T, DictError>) -> bool {
    matches!(out, Err(DictError::Backend(e)) if e.contains("internal error"))
}

#[test]
fn writers_of_a_batcher_thread_that_panics_are_answered_and_writes_go_on() {
    let server = TestServer::start();
    let (d, Parts { batcher, .. }) = node(&server.url(), "f1");
    for (at, (k1, k2)) in [(FAULT_SENT, ("a", "b")), (FAULT_TAKING, ("c", "e"))] {
        // A batch the thread sends (started by a writer that does not
        // wait), a waiting writer in it.
        batcher.hold();
        let later = put_later(&d, k1, 1, Condition::Always).expect("queued");
        let waits = {
            let d = d.clone();
            waiting(move || d.put(k2, int(2), None, Condition::Always))
        };
        until("both writers queued", || batcher.queued() == 2);
        batcher.fault.store(at, Ordering::SeqCst);
        batcher.release();
        assert!(is_backend_error(&answered(&later)), "fault {at}");
        assert!(is_backend_error(&answered(&waits)), "fault {at}");
        until("the thread ended", || !batcher.runs());
        assert_eq!(batcher.in_flight(), 0, "its turn was given back");
    }
    // The batch of the fault before taking it was never sent.
    assert!(d.get("c").unwrap().is_none());
    assert!(d.get("e").unwrap().is_none());
    // Writes go on: alone, and queued (another thread sends them).
    d.put("z", int(3), None, Condition::Always).unwrap();
    batcher.hold();
    let later = put_later(&d, "y", 4, Condition::Always).expect("queued");
    batcher.release();
    assert!(answered(&later).is_ok());
    assert_eq!(int_of(&d.get("y").unwrap()), Some(4));
    d.destroy();
}

#[test]
fn readers_of_a_reader_thread_that_panics_are_answered_and_reads_go_on() {
    let server = TestServer::start();
    let (d, Parts { reader, .. }) = node(&server.url(), "f2");
    d.put("a", int(1), None, Condition::Always).unwrap();
    reader.hold();
    // More than one call's worth: the thread takes a batch of MAX_KEYS and
    // panics; the rest stay queued.
    let later: Vec<_> = (0..MAX_KEYS + 3).map(|_| get_later(&d, "a")).collect();
    let waits = {
        let d = d.clone();
        waiting(move || d.get("a"))
    };
    until("every reader queued", || reader.queued() == MAX_KEYS + 4);
    reader.fault.store(true, Ordering::SeqCst);
    reader.release();
    for rx in &later {
        match answered(rx) {
            Some(out) => assert!(is_backend_error(&out)),
            None => panic!("answered \"not read\""),
        }
    }
    assert!(is_backend_error(&answered(&waits)));
    until("the thread ended", || !reader.runs());
    assert!(!d.would_queue_get(), "its turn was given back");
    // Reads go on: alone, and queued (another thread sends them).
    assert_eq!(int_of(&d.get("a").unwrap()), Some(1));
    reader.hold();
    let later = get_later(&d, "a");
    reader.release();
    let got = answered(&later).expect("read").expect("no error");
    assert_eq!(int_of(&got), Some(1));
    d.destroy();
}
