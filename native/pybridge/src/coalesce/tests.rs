use std::sync::Arc;
use std::thread;

use super::{Entered, Flight, Kind, Table};

type F = Arc<Flight<u32, &'static str>>;

fn table() -> Table<F> {
    Table::default()
}

fn claim(t: &Table<F>, key: &[u8], me: u32) -> F {
    match t.enter(key, me, Some(Kind::Leader), Arc::new) {
        Entered::Claimed(f) => f,
        _ => panic!("expected a claim"),
    }
}

#[test]
fn first_caller_claims_the_next_ones_join() {
    let t = table();
    let f = claim(&t, b"k", 1);
    assert_eq!(f.owner(), 1);
    for me in 2..5 {
        match t.enter(b"k", me, Some(Kind::Leader), Arc::new) {
            Entered::Joined(g, slot) => {
                assert!(Arc::ptr_eq(&f, &g));
                assert_eq!(slot, me as usize - 2);
            }
            _ => panic!("expected a join"),
        }
    }
    assert_eq!(f.joined(), 3);
    assert_eq!(f.joiners(), vec![2, 3, 4]);
    let taken = t.take(&f).expect("first take");
    assert_eq!(taken.joiners, vec![(0, 2), (1, 3), (2, 4)]);
    assert!(t.take(&f).is_none(), "a flight ends once");
    assert!(t.is_empty());
}

#[test]
fn keys_are_compared_exactly() {
    let t = table();
    let a = claim(&t, b"k1", 1);
    let b = claim(&t, b"k2", 2);
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(t.len(), 2);
}

#[test]
fn a_joiner_that_left_is_not_taken_and_one_taken_cannot_leave() {
    let t = table();
    let f = claim(&t, b"k", 1);
    let slot = |me| match t.enter(b"k", me, None, Arc::new) {
        Entered::Joined(_, slot) => slot,
        _ => panic!("expected a join"),
    };
    let (a, b) = (slot(2), slot(3));
    assert!(f.leave(a));
    assert!(!f.leave(a), "leaves once");
    assert_eq!(f.joined(), 1);
    let taken = t.take(&f).expect("take");
    assert_eq!(taken.joiners, vec![(b, 3)]);
    assert!(!f.leave(b), "taken already: its answer is coming");
}

#[test]
fn forget_detaches_but_the_flight_still_ends_with_its_joiners() {
    let t = table();
    let f = claim(&t, b"k", 1);
    assert!(matches!(
        t.enter(b"k", 2, None, Arc::new),
        Entered::Joined(..)
    ));
    assert!(t.forget(b"k"));
    assert!(matches!(t.enter(b"k", 3, None, Arc::new), Entered::Absent));
    let g = claim(&t, b"k", 4);
    assert_eq!(t.take(&f).expect("take").joiners, vec![(0, 2)]);
    // Taking the forgotten one left the new one mapped.
    assert!(t.get(b"k").is_some_and(|h| Arc::ptr_eq(&h, &g)));
}

#[test]
fn forget_prefix_takes_a_group() {
    let t = table();
    for k in [&b"g1/a"[..], b"g1/b", b"g2/a"] {
        claim(&t, k, 1);
    }
    assert_eq!(t.forget_prefix(b"g1/"), 2);
    assert_eq!(t.len(), 1);
    assert!(t.get(b"g2/a").is_some());
}

#[test]
fn process_flights_are_joined_by_message_and_claimed_once() {
    let t = table();
    let f = match t.enter(b"k", 7, Some(Kind::Process), Arc::new) {
        Entered::Claimed(f) => f,
        _ => panic!("expected a claim"),
    };
    assert_eq!(f.kind(), Kind::Process);
    assert!(matches!(
        t.enter(b"k", 8, Some(Kind::Leader), Arc::new),
        Entered::Process(_)
    ));
    assert!(matches!(
        t.enter(b"k", 9, Some(Kind::Process), Arc::new),
        Entered::Held
    ));
    assert!(!t.unmap_owner(b"k", 8), "not its owner");
    assert!(t.unmap_owner(b"k", 7));
    assert!(!t.unmap(&f));
    assert!(t.is_empty());
}

#[test]
fn the_call_is_kept_for_whoever_takes_the_flight() {
    let t = table();
    let f = claim(&t, b"k", 1);
    assert!(f.mark("call").is_ok());
    let taken = t.take(&f).expect("take");
    assert_eq!(taken.call, Some("call"));
    assert_eq!(f.mark("late"), Err("late"));
}

#[test]
fn many_keys_in_flight_then_none() {
    let t = table();
    let flights: Vec<F> = (0..100_000u32)
        .map(|i| claim(&t, &i.to_le_bytes(), i))
        .collect();
    assert_eq!(t.len(), 100_000);
    for f in &flights {
        assert!(t.take(f).is_some());
    }
    assert!(t.is_empty());
}

/// Joiners racing the take and their own leaving: every joiner is either
/// taken or has left, never both, never neither.
#[test]
fn joiners_racing_the_end_are_answered_exactly_once() {
    for _ in 0..50 {
        let t = Arc::new(table());
        let f = claim(&t, b"k", 0);
        let joiners: Vec<_> = (1..=8u32)
            .map(|me| {
                let t = t.clone();
                thread::spawn(move || {
                    let mut mine = Vec::new();
                    for _ in 0..200 {
                        match t.enter(b"k", me, None, Arc::new) {
                            Entered::Joined(f, slot) => {
                                let left = slot % 3 == 0 && f.leave(slot);
                                mine.push((slot, left));
                            }
                            _ => break,
                        }
                    }
                    mine
                })
            })
            .collect();
        thread::yield_now();
        let taken = t.take(&f).expect("take");
        let mut answered = 0;
        let mut left = 0;
        for j in joiners {
            for (slot, gone) in j.join().expect("joiner thread") {
                if gone {
                    left += 1;
                    assert!(!taken.joiners.iter().any(|(s, _)| *s == slot));
                } else {
                    answered += 1;
                    assert!(taken.joiners.iter().any(|(s, _)| *s == slot));
                }
            }
        }
        assert_eq!(answered, taken.joiners.len());
        let _ = left;
        assert!(t.is_empty());
    }
}
