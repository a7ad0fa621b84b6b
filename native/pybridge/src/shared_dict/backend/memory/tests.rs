//! The memory store's own structures: nodes with and without sections,
//! the expiry index, the LRU list, shards. Behaviour through the front is
//! tested in `shared_dict/tests.rs`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use super::*;
use crate::convert::Value;
use crate::shared_dict::backend::test_support::{as_int, int, put};
use crate::shared_dict::EventKind;

fn get(m: &Memory, key: &str, now: Millis) -> Option<i64> {
    m.get(key, now).unwrap().map(|(item, _)| as_int(&item))
}

/// Checks every shard's links (table, expiry slots, LRU order).
fn check(m: &Memory) {
    for s in m.shards.iter() {
        s.0.lock().check();
    }
}

fn stored(m: &Memory) -> usize {
    m.shards.iter().map(|s| s.0.lock().stored()).sum()
}

#[test]
fn scalars_are_kept_inline_and_read_back_equal() {
    let m = Memory::new(Bounds::default());
    let values = [
        Value::None,
        Value::Bool(true),
        Value::Int(i64::MIN),
        Value::Float(-0.0),
        Value::Float(f64::NAN),
        Value::Str("text".into()),
        Value::List(vec![Value::Int(1)]),
    ];
    for (i, v) in values.iter().enumerate() {
        let item = Arc::new(Stored::Plain(v.clone()));
        let key = format!("k{i}");
        m.put(
            &key,
            item.clone().into(),
            Expiry::Never,
            Condition::Always,
            0,
            &mut Events::default(),
        )
        .unwrap();
        let (back, _) = m.get(&key, 0).unwrap().unwrap();
        match (&*back, v) {
            (Stored::Plain(Value::Float(a)), Value::Float(b)) => {
                assert_eq!(a.to_bits(), b.to_bits())
            }
            (Stored::Plain(a), b) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
            other => panic!("{other:?}"),
        }
        if matches!(v, Value::Str(_) | Value::List(_)) {
            assert!(
                matches!(&back, Found::Shared(b) if Arc::ptr_eq(b, &item)),
                "a shared value is not copied"
            );
        }
    }
}

#[test]
fn a_key_moves_between_expiry_slots_and_out_of_them() {
    let m = Memory::with_shards(Bounds::default(), 1);
    put(&m, "a", 1, Expiry::Never, 0).unwrap();
    // First TTL: the node grows a timer section.
    assert!(m.set_expiry("a", Some(100), 0).unwrap());
    check(&m);
    put(&m, "a", 2, Expiry::At(50), 0).unwrap();
    put(&m, "b", 3, Expiry::At(50), 0).unwrap();
    put(&m, "c", 4, Expiry::At(70), 0).unwrap();
    check(&m);
    assert_eq!(m.next_expiry(), Some(50));
    assert_eq!(m.len(49).unwrap(), 3);
    assert_eq!(m.len(50).unwrap(), 1, "counted out from their millisecond");
    // A put without TTL removes it; update keeps it.
    put(&m, "b", 5, Expiry::Never, 0).unwrap();
    put(&m, "c", 6, Expiry::Keep, 0).unwrap();
    assert_eq!(m.expiry("b", 0).unwrap(), Some(None));
    assert_eq!(m.expiry("c", 0).unwrap(), Some(Some(70)));
    assert!(m.set_expiry("c", None, 0).unwrap());
    check(&m);
    assert_eq!(m.next_expiry(), Some(50));
    let mut events = Events::default();
    assert_eq!(m.sweep(1_000, 10, &mut events).unwrap(), 1);
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].kind, &*events[0].key), (EventKind::Expire, "a"));
    assert_eq!(events[0].value.as_deref().map(as_int), Some(2));
    assert_eq!(m.next_expiry(), None);
    // A key that had a TTL keeps its timer section and can take one again.
    assert!(m.set_expiry("b", Some(10), 0).unwrap());
    assert!(m.set_expiry("b", Some(20), 0).unwrap());
    check(&m);
    assert_eq!(m.next_expiry(), Some(20));
    assert_eq!(get(&m, "b", 19), Some(5));
    assert_eq!(get(&m, "b", 20), None);
}

#[test]
fn the_sweep_takes_expiries_in_time_order_in_batches() {
    let m = Memory::new(Bounds::default());
    for i in 0..1_000 {
        put(&m, &format!("k{i}"), i, Expiry::At(1 + (i as u64 % 10)), 0).unwrap();
    }
    put(&m, "stays", 0, Expiry::Never, 0).unwrap();
    assert_eq!(m.len(5).unwrap(), 501);
    let mut seen = Vec::new();
    loop {
        let mut events = Events::default();
        let n = m.sweep(100, 64, &mut events).unwrap();
        assert_eq!(n, events.len());
        assert!(n <= 64);
        seen.extend(events.iter().map(|e| as_int(e.value.as_deref().unwrap())));
        if n == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 1_000);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 1_000);
    assert_eq!(stored(&m), 1);
    check(&m);
    // Each shard pops its own in time order.
    let m = Memory::with_shards(Bounds::default(), 1);
    for i in 0..100 {
        put(&m, &format!("k{i}"), i, Expiry::At(100 - i as u64), 0).unwrap();
    }
    let mut events = Events::default();
    m.sweep(1_000, 1_000, &mut events).unwrap();
    let order: Vec<i64> = events
        .iter()
        .map(|e| as_int(e.value.as_deref().unwrap()))
        .collect();
    assert_eq!(order, (0..100).rev().collect::<Vec<_>>());
}

#[test]
fn the_lru_order_survives_a_node_growing_a_timer() {
    let bounds = Bounds {
        max_entries: Some(3),
        evict_lru: true,
    };
    let m = Memory::new(bounds);
    for k in ["a", "b", "c"] {
        put(&m, k, 1, Expiry::Never, 0).unwrap();
    }
    // "a" moves to a bigger node and becomes the most recent (a write).
    put(&m, "a", 2, Expiry::At(1_000), 0).unwrap();
    check(&m);
    let mut events = Events::default();
    m.put(
        "d",
        int(4).into(),
        Expiry::Never,
        Condition::Always,
        0,
        &mut events,
    )
    .unwrap();
    assert_eq!((events[0].kind, &*events[0].key), (EventKind::Delete, "b"));
    assert!(m.set_expiry("c", Some(2_000), 0).unwrap());
    check(&m);
    // Reading "c" makes "a" the least recent.
    get(&m, "c", 0);
    events.clear();
    m.put(
        "e",
        int(5).into(),
        Expiry::Never,
        Condition::Always,
        0,
        &mut events,
    )
    .unwrap();
    assert_eq!(&*events[0].key, "a");
    let mut keys: Vec<String> = m.keys(0).unwrap().iter().map(|k| k.to_string()).collect();
    keys.sort();
    assert_eq!(keys, ["c", "d", "e"]);
    check(&m);
}

#[test]
fn clear_keeps_versions_new_and_frees_every_entry() {
    let m = Memory::new(Bounds::default());
    let v1 = put(&m, "a", 1, Expiry::At(10), 0).unwrap();
    put(&m, "b", 1, Expiry::Never, 0).unwrap();
    assert_eq!(m.clear(0).unwrap(), 2);
    assert_eq!(m.len(0).unwrap(), 0);
    assert_eq!(m.next_expiry(), None);
    let v2 = put(&m, "a", 1, Expiry::Never, 0).unwrap();
    assert!(v2 > v1, "a version is not given twice to a key");
}

#[test]
fn shards_lose_nothing_under_concurrent_writers() {
    let m = Arc::new(Memory::new(Bounds::default()));
    assert_eq!(m.shards.len(), SHARDS);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (m, barrier) = (m.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for i in 0..2_000 {
                    let key = format!("t{t}-{i}");
                    put(&*m, &key, i, Expiry::Never, 0).unwrap();
                    if i % 2 == 1 {
                        let mut ev = Events::default();
                        assert!(m.remove(&key, 0, &mut ev).unwrap().is_some());
                    }
                    let mut add =
                        |c: Option<&Stored>| Ok(Stored::Plain(Value::Int(c.map_or(0, as_int) + 1)));
                    m.modify("shared", &mut add, 0, &mut Events::default())
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(get(&m, "shared", 0), Some(16_000), "no increment lost");
    assert_eq!(m.len(0).unwrap(), 8 * 1_000 + 1);
    assert_eq!(m.keys(0).unwrap().len(), 8 * 1_000 + 1);
    assert_eq!(m.entries(0).unwrap().len(), 8 * 1_000 + 1);
    check(&m);
}

#[test]
fn max_entries_stays_exact_under_concurrent_puts() {
    let m = Arc::new(Memory::new(Bounds {
        max_entries: Some(100),
        evict_lru: false,
    }));
    let ok = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (m, ok, barrier) = (m.clone(), ok.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for i in 0..500 {
                    match put(&*m, &format!("t{t}-{i}"), i, Expiry::Never, 0) {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(DictError::Full) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(ok.load(Ordering::Relaxed), 100);
    assert_eq!(m.len(0).unwrap(), 100);
}

#[test]
fn dropping_a_store_frees_entries_of_every_shape() {
    // Run under a leak checker (valgrind, miri) this shows no leak; here it
    // shows that the values are released.
    let item = int(7);
    {
        let m = Memory::new(Bounds {
            max_entries: Some(10),
            evict_lru: true,
        });
        let big = Arc::new(Stored::Plain(Value::Str("x".repeat(100))));
        for (i, expiry) in [Expiry::Never, Expiry::At(5)].into_iter().enumerate() {
            m.put(
                &format!("s{i}"),
                big.clone().into(),
                expiry,
                Condition::Always,
                0,
                &mut Events::default(),
            )
            .unwrap();
        }
        m.put(
            "i",
            item.clone().into(),
            Expiry::Never,
            Condition::Always,
            0,
            &mut Events::default(),
        )
        .unwrap();
        assert_eq!(Arc::strong_count(&big), 3);
        drop(m);
        assert_eq!(Arc::strong_count(&big), 1);
    }
    assert_eq!(Arc::strong_count(&item), 1, "an inline value keeps no item");
}

/// Bytes one entry takes: its node's malloc chunk plus its share of the
/// table, for `n` entries like the benchmark's (`"k<i>" => i`). Load
/// independent (it asks malloc what it handed out).
fn bytes_per_entry(n: usize, ttl: bool) -> f64 {
    let m = Memory::new(Bounds::default());
    let expiry = if ttl {
        Expiry::At(1 << 40)
    } else {
        Expiry::Never
    };
    for i in 0..n {
        put(&m, &format!("k{i}"), i as i64, expiry, 0).unwrap();
    }
    let total: usize = m.shards.iter().map(|s| s.0.lock().footprint()).sum();
    total as f64 / n as f64
}

#[test]
fn a_small_entry_takes_under_80_bytes() {
    let per = bytes_per_entry(100_000, false);
    assert!(per < 80.0, "{per} bytes per entry");
}

/// `cargo test --release probe_memory_per_entry -- --ignored --nocapture`
#[test]
#[ignore]
fn probe_memory_per_entry() {
    for ttl in [false, true] {
        let per = bytes_per_entry(1_000_000, ttl);
        println!("1,000,000 entries (ttl: {ttl}): {per:.1} bytes each");
    }
}

/// 1,000,000 keys expiring in the same millisecond, swept in the
/// sweeper's batches: prints how long it took and the longest batch (a
/// figure to read, never asserted).
/// `cargo test --release probe_mass_expiry -- --ignored --nocapture`
#[test]
#[ignore]
fn probe_mass_expiry() {
    let m = Memory::new(Bounds::default());
    for i in 0..1_000_000 {
        put(&m, &format!("k{i}"), i, Expiry::At(10), 0).unwrap();
    }
    assert_eq!(m.len(10).unwrap(), 0);
    let start = std::time::Instant::now();
    let (mut total, mut longest) = (0, std::time::Duration::ZERO);
    let mut events = Events::default();
    loop {
        let t = std::time::Instant::now();
        let n = m
            .sweep(10, crate::limits::SWEEP_BATCH, &mut events)
            .unwrap();
        longest = longest.max(t.elapsed());
        events.clear();
        total += n;
        if n < crate::limits::SWEEP_BATCH {
            break;
        }
    }
    assert_eq!(total, 1_000_000);
    println!(
        "1,000,000 keys swept in {:?}, longest batch (with its events dropped) {:?}",
        start.elapsed(),
        longest
    );
}

#[test]
fn a_read_item_is_never_shared_with_a_reader_still_holding_one() {
    let m = Memory::new(Bounds::default());
    put(&m, "a", 1, Expiry::Never, 0).unwrap();
    put(&m, "b", 2, Expiry::Never, 0).unwrap();
    let (first, _) = m.get("a", 0).unwrap().unwrap();
    let (second, _) = m.get("b", 0).unwrap().unwrap();
    // The first reader still holds its item: the second got another one.
    assert_eq!((as_int(&first), as_int(&second)), (1, 2));
    drop(first);
    drop(second);
    // Dropped: the next read may reuse the allocation, with its own value.
    let (third, _) = m.get("a", 0).unwrap().unwrap();
    assert_eq!(as_int(&third), 1);
}

/// `close` while writers write: a write either finished before `close`
/// took its shard (and `close` emptied it) or fails with `Destroyed`;
/// nothing is left in the store, and every operation after `close`
/// returned fails.
#[test]
fn close_while_writing_leaves_nothing_and_refuses_everything_after() {
    for _round in 0..20 {
        let m = Arc::new(Memory::new(Bounds::default()));
        let writers = 4;
        let started = Arc::new(Barrier::new(writers + 1));
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let m = m.clone();
                let started = started.clone();
                thread::spawn(move || {
                    started.wait();
                    let mut ok = 0u64;
                    for i in 0.. {
                        match put(&*m, &format!("w{w}-{i}"), i, Expiry::Never, 0) {
                            Ok(_) => ok += 1,
                            Err(DictError::Destroyed) => return ok,
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        started.wait();
        // Let the writers get going (a put lands), then close.
        while stored(&m) == 0 {
            thread::yield_now();
        }
        m.close();
        let after = stored(&m);
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(total > 0);
        assert_eq!(after, 0, "close emptied the store");
        assert_eq!(stored(&m), 0, "no write landed after close");
        let mut ev = Events::default();
        assert_eq!(
            put(&*m, "late", 1, Expiry::Never, 0),
            Err(DictError::Destroyed)
        );
        assert!(matches!(m.get("late", 0), Err(DictError::Destroyed)));
        assert!(matches!(
            m.remove("late", 0, &mut ev),
            Err(DictError::Destroyed)
        ));
        assert!(matches!(m.keys(0), Err(DictError::Destroyed)));
        assert!(matches!(m.len(0), Err(DictError::Destroyed)));
        assert!(matches!(m.clear(0), Err(DictError::Destroyed)));
        assert!(matches!(m.sweep(0, 10, &mut ev), Err(DictError::Destroyed)));
        assert!(matches!(m.expiry("late", 0), Err(DictError::Destroyed)));
        let mut add = |_: Option<&Stored>| Ok(Stored::Plain(Value::Int(1)));
        assert!(matches!(
            m.modify("late", &mut add, 0, &mut ev),
            Err(DictError::Destroyed)
        ));
    }
}

/// A write that only counts its event (nobody listens) lists nothing but
/// what else happened (an expiry it met), and is counted by its shard
/// (none left in the events for the front to count).
#[test]
fn a_counting_write_lists_only_the_expiry_it_met() {
    let m = Memory::new(Bounds::default());
    put(&m, "a", 1, Expiry::At(10), 0).unwrap();
    let mut ev = Events::counting();
    m.put(
        "a",
        int(2).into(),
        Expiry::Never,
        Condition::Always,
        20,
        &mut ev,
    )
    .unwrap();
    assert_eq!((ev.counted(), m.counted_puts()), (0, Ok(1)));
    let kinds: Vec<_> = ev.iter().map(|e| (e.kind, e.key.to_string())).collect();
    assert_eq!(kinds, [(EventKind::Expire, "a".to_owned())]);
    assert_eq!(get(&m, "a", 20), Some(2));
}
