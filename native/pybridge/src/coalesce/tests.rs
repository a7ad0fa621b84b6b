use std::hash::BuildHasher;
use std::sync::Arc;
use std::thread;

use super::{shard_of, Entered, Flight, Kind, Table, SHARDS};

/// Flights with byte keys; the joiners' handle is a number.
type F = Arc<Flight<u32, &'static str, u32>>;

fn table() -> Table<F> {
    Table::default()
}

fn h(key: &[u8]) -> u64 {
    foldhash::fast::FixedState::default().hash_one(key)
}

fn enter(t: &Table<F>, key: &[u8], me: u32, claim: Option<Kind>) -> Entered<F, u32> {
    t.enter(h(key), key.to_vec(), me, claim, Arc::new, |_| 99)
}

fn claim(t: &Table<F>, key: &[u8], me: u32) -> F {
    match enter(t, key, me, Some(Kind::Leader)) {
        Entered::Claimed(f) => f,
        _ => panic!("expected a claim"),
    }
}

fn slot(t: &Table<F>, key: &[u8], me: u32) -> usize {
    match enter(t, key, me, None) {
        Entered::Joined(_, slot, handle) => {
            assert_eq!(handle, 99);
            slot
        }
        _ => panic!("expected a join"),
    }
}

#[test]
fn first_caller_claims_the_next_ones_join() {
    let t = table();
    let f = claim(&t, b"k", 1);
    assert_eq!(f.owner(), 1);
    for me in 2..5 {
        match enter(&t, b"k", me, Some(Kind::Leader)) {
            Entered::Joined(g, slot, _) => {
                assert!(Arc::ptr_eq(&f, &g));
                assert_eq!(slot, me as usize - 2);
            }
            _ => panic!("expected a join"),
        }
    }
    assert_eq!(f.joined(), 3);
    assert_eq!(f.joiners(), vec![2, 3, 4]);
    let taken = t.take_name(f.name()).expect("first take");
    assert_eq!(taken.joiners, vec![(0, 2), (1, 3), (2, 4)]);
    assert_eq!(taken.handle, Some(99));
    assert!(t.take(&f).is_none(), "a flight ends once");
    assert!(t.is_empty());
}

#[test]
fn nobody_joined_no_handle() {
    let t = table();
    let f = claim(&t, b"k", 1);
    let taken = t.take(&f).expect("take");
    assert!(taken.joiners.is_empty() && taken.handle.is_none());
}

#[test]
fn keys_are_told_apart() {
    let t = table();
    let a = claim(&t, b"k1", 1);
    let b = claim(&t, b"k2", 2);
    assert!(!Arc::ptr_eq(&a, &b));
    assert_ne!(a.name(), b.name());
    assert_eq!(t.len(), 2);
}

#[test]
fn keys_of_one_hash_are_told_apart_by_their_bytes() {
    let t = table();
    let claim_with =
        |key: &'static [u8]| t.enter(7, key.to_vec(), 1, Some(Kind::Leader), Arc::new, |_| 0);
    let (a, b) = (claim_with(b"a"), claim_with(b"b"));
    assert!(matches!((a, b), (Entered::Claimed(_), Entered::Claimed(_))));
    assert!(matches!(claim_with(b"a"), Entered::Joined(..)));
    assert_eq!(t.len(), 2);
}

#[test]
fn a_joiner_that_left_is_not_taken_and_one_taken_cannot_leave() {
    let t = table();
    let f = claim(&t, b"k", 1);
    let (a, b) = (slot(&t, b"k", 2), slot(&t, b"k", 3));
    assert!(f.leave(a));
    assert!(!f.leave(a), "leaves once");
    assert_eq!(f.joined(), 1);
    let taken = t.take(&f).expect("take");
    assert_eq!(taken.joiners, vec![(b, 3)]);
    assert!(!f.leave(b), "taken already: its answer is coming");
}

#[test]
fn forget_hides_the_flight_but_its_leader_still_takes_it_with_its_joiners() {
    let t = table();
    let f = claim(&t, b"k", 1);
    slot(&t, b"k", 2);
    assert!(t.forget(h(b"k"), b"k"));
    assert!(matches!(enter(&t, b"k", 3, None), Entered::Absent));
    assert!(t.get(h(b"k"), b"k").is_none());
    let g = claim(&t, b"k", 4);
    assert_eq!(t.take_name(f.name()).expect("take").joiners, vec![(0, 2)]);
    // Taking the forgotten one left the new one in place.
    assert!(t.get(h(b"k"), b"k").is_some_and(|x| Arc::ptr_eq(&x, &g)));
    assert_eq!(t.len(), 1);
}

#[test]
fn forget_where_takes_a_group() {
    let t = table();
    let flights: Vec<F> = [&b"g1/a"[..], b"g1/b", b"g2/a"]
        .iter()
        .map(|k| claim(&t, k, 1))
        .collect();
    assert_eq!(t.forget_where(b"g1/"), 2);
    assert!(t.get(h(b"g1/a"), b"g1/a").is_none());
    assert!(t.get(h(b"g2/a"), b"g2/a").is_some());
    for f in &flights {
        assert!(t.take(f).is_some());
    }
    assert!(t.is_empty());
}

#[test]
fn process_flights_are_joined_by_message_and_claimed_once() {
    let t = table();
    let f = match enter(&t, b"k", 7, Some(Kind::Process)) {
        Entered::Claimed(f) => f,
        _ => panic!("expected a claim"),
    };
    assert_eq!(f.kind(), Kind::Process);
    assert!(matches!(
        enter(&t, b"k", 8, Some(Kind::Leader)),
        Entered::Process(_)
    ));
    assert!(matches!(
        enter(&t, b"k", 9, Some(Kind::Process)),
        Entered::Held
    ));
    assert!(!t.unmap_owner(h(b"k"), b"k", 8), "not its owner");
    assert!(t.unmap_owner(h(b"k"), b"k", 7));
    assert!(!t.unmap(f.name()));
    assert!(t.is_empty());
    // A forgotten process flight leaves the table at once.
    let g = claim(&t, b"p", 1);
    assert!(t.take(&g).is_some());
    let p = match enter(&t, b"p", 7, Some(Kind::Process)) {
        Entered::Claimed(p) => p,
        _ => panic!("expected a claim"),
    };
    assert!(t.forget(h(b"p"), b"p"));
    assert!(t.is_empty());
    assert!(!t.unmap(p.name()));
}

#[test]
fn the_call_is_kept_for_whoever_takes_the_flight() {
    let t = table();
    let f = claim(&t, b"k", 1);
    let named = t.by_name(f.name()).expect("by name");
    assert!(named.mark("call").is_ok());
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
        assert!(t.take_name(f.name()).is_some());
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
                        match enter(&t, b"k", me, None) {
                            Entered::Joined(f, slot, _) => {
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
        for j in joiners {
            for (slot, gone) in j.join().expect("joiner thread") {
                let in_taken = taken.joiners.iter().any(|(s, _)| *s == slot);
                assert_eq!(in_taken, !gone, "taken or left, not both");
                answered += usize::from(!gone);
            }
        }
        assert_eq!(answered, taken.joiners.len());
        assert!(t.is_empty());
    }
}

#[test]
fn a_flight_is_taken_alone_only_while_nobody_is_joined() {
    let t = table();
    let f = claim(&t, b"k", 1);
    let s = slot(&t, b"k", 2);
    assert!(t.take_alone(&f).is_none(), "a joiner is in");
    assert!(matches!(enter(&t, b"k", 3, None), Entered::Joined(..)));
    assert!(f.leave(s));
    assert!(t.take_alone(&f).is_none(), "one joiner is still in");
    assert!(f.leave(1));
    let taken = t.take_alone(&f).expect("nobody is in");
    assert!(taken.joiners.is_empty());
    assert!(t.is_empty());
    assert!(
        t.take_alone(&f).is_none() && t.take(&f).is_none(),
        "a flight ends once"
    );
}

/// Instruction counts of an uncontended coalesced call's work in the table
/// and the miss counters (callgrind, not a timing assertion): 100,000
/// claims of one key, each taken at once, and their misses counted, as
/// `coalesce_submit/6` does. Run with `valgrind --tool=callgrind
/// --toggle-collect='*probe_coalesce_*'` on `cargo test --release
/// --no-default-features probe_coalesce -- --ignored`.
#[test]
#[ignore]
#[inline(never)]
fn probe_coalesce_uncontended() {
    let t = table();
    let misses = super::Misses::default();
    // `{:users, 12345}`'s encoding, as the NIF layer writes it.
    let key: &[u8] = &[
        131, 104, 2, 119, 5, b'u', b's', b'e', b'r', b's', 98, 0, 0, 48, 57,
    ];
    let hash = h(key);
    for _ in 0..100_000 {
        let f = claim_uncontended(&t, std::hint::black_box(key).to_vec(), hash);
        let taken = t.take(&f);
        std::hint::black_box(taken);
        misses.count(std::hint::black_box(&key[3..10]));
    }
    assert_eq!(misses.get(&key[3..10]), 100_000);
}

#[inline(never)]
fn claim_uncontended(t: &Table<F>, key: Vec<u8>, hash: u64) -> F {
    match t.enter(hash, key, 1, Some(Kind::Leader), Arc::new, |_| 0) {
        Entered::Claimed(f) => f,
        _ => panic!("expected a claim"),
    }
}

/// The table places keys by their hash as it is (foldhash's, not mixed
/// again): keys like the NIF layer's, `{:users, i}`, fill every shard
/// evenly, and within a shard hashbrown's tags (the top seven bits) still
/// take all their values.
#[test]
fn keys_spread_over_the_shards_and_their_tags() {
    for seed in [1, 2, 3] {
        let hasher = foldhash::fast::FixedState::with_seed(seed);
        let mut shards = vec![0usize; SHARDS];
        let mut tags = vec![[false; 128]; SHARDS];
        for i in 0..100_000i32 {
            let mut key = vec![131, 104, 2, 119, 5, b'u', b's', b'e', b'r', b's', 98];
            key.extend_from_slice(&i.to_be_bytes());
            let hash = hasher.hash_one(&key[..]);
            shards[shard_of(hash)] += 1;
            tags[shard_of(hash)][(hash >> 57) as usize] = true;
        }
        let mean = 100_000 / SHARDS;
        for n in &shards {
            assert!(*n > mean * 8 / 10 && *n < mean * 12 / 10, "{shards:?}");
        }
        assert!(tags.iter().all(|t| t.iter().all(|&seen| seen)));
    }
}
