use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::backend::{Events, RawEvent};
use super::*;

fn int(i: i64) -> Stored {
    Stored::Plain(Value::Int(i))
}

fn as_int(item: &Stored) -> i64 {
    match item {
        Stored::Plain(Value::Int(i)) => *i,
        other => panic!("not an int: {other:?}"),
    }
}

/// The memory store, with the results of its infallible operations
/// unwrapped (the memory store never fails with `DictError::Backend`).
struct Mem(Memory);

impl Mem {
    fn get(&self, key: &str, now: Millis) -> Option<(Found, u64)> {
        self.0.get(key, now).expect("memory get")
    }
    fn put(
        &self,
        key: &str,
        item: Item,
        expiry: Expiry,
        cond: Condition,
        now: Millis,
        events: &mut Events,
    ) -> Result<u64, DictError> {
        self.0.put(key, item.into(), expiry, cond, now, events)
    }
    fn remove(&self, key: &str, now: Millis, events: &mut Events) -> Option<Item> {
        self.0.remove(key, now, events).expect("memory remove")
    }
    fn keys(&self, now: Millis) -> Vec<Arc<str>> {
        self.0.keys(now).expect("memory keys")
    }
    fn entries(&self, now: Millis) -> Vec<(Arc<str>, Item)> {
        self.0.entries(now).expect("memory entries")
    }
    fn len(&self, now: Millis) -> usize {
        self.0.len(now).expect("memory len")
    }
    fn expiry(&self, key: &str, now: Millis) -> Option<Option<Millis>> {
        self.0.expiry(key, now).expect("memory expiry")
    }
    fn set_expiry(&self, key: &str, at: Option<Millis>, now: Millis) -> bool {
        self.0.set_expiry(key, at, now).expect("memory set_expiry")
    }
    #[allow(dead_code)]
    fn clear(&self, now: Millis) -> usize {
        self.0.clear(now).expect("memory clear")
    }
    fn sweep(&self, now: Millis, max: usize, events: &mut Events) -> usize {
        self.0.sweep(now, max, events).expect("memory sweep")
    }
    fn next_expiry(&self) -> Option<Millis> {
        self.0.next_expiry()
    }
}

fn mem(bounds: Bounds) -> Mem {
    Mem(Memory::new(bounds))
}

fn put(m: &Mem, key: &str, i: i64, expiry: Expiry, now: Millis) -> Result<u64, DictError> {
    m.put(
        key,
        Arc::new(int(i)),
        expiry,
        Condition::Always,
        now,
        &mut Events::default(),
    )
}

fn dict() -> Arc<SharedDict> {
    SharedDict::new(DictOptions::default()).unwrap()
}

/// Records every event it is told of.
#[derive(Default)]
struct Recorder(Mutex<Vec<(EventKind, String)>>);

impl Listener for Recorder {
    fn event(&self, kind: EventKind, key: &str, _value: Option<&Item>) {
        self.0.lock().push((kind, key.to_owned()));
    }
}

// ── Expiry, decided by the clock passed in ──────────────────────────────

#[test]
fn an_expired_key_is_never_returned_counted_listed_or_iterated() {
    let m = mem(Bounds::default());
    put(&m, "a", 1, Expiry::At(100), 0).unwrap();
    put(&m, "b", 2, Expiry::Never, 0).unwrap();
    // Live up to 99 ms...
    assert!(m.get("a", 99).is_some());
    assert_eq!(m.len(99), 2);
    assert_eq!(m.expiry("a", 99), Some(Some(100)));
    // ...and gone from 100 ms on, although nothing removed it yet.
    for now in [100, 101, 10_000] {
        assert!(m.get("a", now).is_none());
        assert_eq!(m.len(now), 1);
        assert_eq!(m.keys(now), vec![Arc::<str>::from("b")]);
        assert_eq!(m.entries(now).len(), 1);
        assert_eq!(m.expiry("a", now), None);
        assert!(!m.set_expiry("a", None, now), "persist cannot revive it");
    }
    assert_eq!(m.next_expiry(), Some(100));
}

#[test]
fn a_write_that_meets_an_expired_key_reports_the_expiry_first() {
    let m = mem(Bounds::default());
    put(&m, "a", 1, Expiry::At(10), 0).unwrap();
    let mut events = Events::default();
    m.put(
        "a",
        Arc::new(int(2)),
        Expiry::Never,
        Condition::Absent,
        20,
        &mut events,
    )
    .unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Expire, EventKind::Put]);
    assert_eq!(m.next_expiry(), None, "the old timer went with the entry");
    // A delete of an expired key reports the expiry, not a delete.
    put(&m, "b", 1, Expiry::At(30), 20).unwrap();
    let mut events = Events::default();
    assert!(m.remove("b", 30, &mut events).is_none());
    assert_eq!(events[0].kind, EventKind::Expire);
}

#[test]
fn events_carry_the_value_written_or_removed() {
    let m = mem(Bounds::default());
    let mut events = Events::default();
    let value = |e: &RawEvent| e.value.as_deref().map(as_int);
    m.put(
        "a",
        Arc::new(int(1)),
        Expiry::At(10),
        Condition::Always,
        0,
        &mut events,
    )
    .unwrap();
    m.put(
        "b",
        Arc::new(int(2)),
        Expiry::Never,
        Condition::Always,
        0,
        &mut events,
    )
    .unwrap();
    m.remove("b", 1, &mut events);
    m.sweep(20, 10, &mut events);
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.key.to_string(), value(e)))
        .collect();
    assert_eq!(
        got,
        [
            (EventKind::Put, "a".into(), Some(1)),
            (EventKind::Put, "b".into(), Some(2)),
            (EventKind::Delete, "b".into(), Some(2)),
            (EventKind::Expire, "a".into(), Some(1)),
        ]
    );
}

#[test]
fn sweep_removes_due_keys_in_expiry_order_and_in_batches() {
    let m = mem(Bounds::default());
    for i in 0..10 {
        put(&m, &format!("k{i}"), i, Expiry::At(100 - i as u64), 0).unwrap();
    }
    put(&m, "late", 0, Expiry::At(1_000), 0).unwrap();
    let mut events = Events::default();
    assert_eq!(m.sweep(200, 4, &mut events), 4);
    let keys: Vec<_> = events.iter().map(|e| e.key.to_string()).collect();
    assert_eq!(keys, ["k9", "k8", "k7", "k6"]);
    assert_eq!(m.sweep(200, 100, &mut events), 6);
    assert_eq!(m.sweep(200, 100, &mut events), 0);
    assert_eq!(m.len(200), 1);
    assert_eq!(m.next_expiry(), Some(1_000));
}

#[test]
fn rewriting_or_persisting_a_key_moves_or_drops_its_timer() {
    let m = mem(Bounds::default());
    put(&m, "a", 1, Expiry::At(10), 0).unwrap();
    put(&m, "a", 2, Expiry::At(50), 5).unwrap();
    assert_eq!(m.next_expiry(), Some(50));
    let mut events = Events::default();
    assert_eq!(m.sweep(20, 10, &mut events), 0, "the old timer is gone");
    put(&m, "a", 3, Expiry::Keep, 6).unwrap();
    assert_eq!(m.expiry("a", 6), Some(Some(50)), "Keep keeps it");
    assert!(m.set_expiry("a", None, 7));
    assert_eq!(m.next_expiry(), None);
    assert!(m.get("a", u64::MAX).is_some());
    put(&m, "a", 4, Expiry::Never, 8).unwrap();
    assert_eq!(m.expiry("a", 8), Some(None));
}

// ── Bounds ──────────────────────────────────────────────────────────────

#[test]
fn a_new_key_beyond_max_entries_is_refused_and_nothing_is_evicted() {
    let m = mem(Bounds {
        max_entries: Some(2),
        evict_lru: false,
    });
    put(&m, "a", 1, Expiry::Never, 0).unwrap();
    put(&m, "b", 2, Expiry::Never, 0).unwrap();
    assert_eq!(put(&m, "c", 3, Expiry::Never, 0), Err(DictError::Full));
    // Overwriting an existing key is not a new key.
    put(&m, "a", 10, Expiry::Never, 0).unwrap();
    assert_eq!(m.len(0), 2);
    assert_eq!(as_int(&m.get("b", 0).unwrap().0), 2);
}

#[test]
fn expired_keys_make_room_under_max_entries() {
    let m = mem(Bounds {
        max_entries: Some(1),
        evict_lru: false,
    });
    put(&m, "a", 1, Expiry::At(10), 0).unwrap();
    assert_eq!(put(&m, "b", 2, Expiry::Never, 5), Err(DictError::Full));
    put(&m, "b", 2, Expiry::Never, 10).unwrap();
    assert_eq!(m.len(10), 1);
}

#[test]
fn a_new_key_takes_the_place_of_one_expired_key_without_sweeping_them_all() {
    let m = mem(Bounds {
        max_entries: Some(3),
        evict_lru: false,
    });
    put(&m, "a", 1, Expiry::At(10), 0).unwrap();
    put(&m, "b", 2, Expiry::At(20), 0).unwrap();
    put(&m, "c", 3, Expiry::Never, 0).unwrap();
    let mut events = Events::default();
    m.put(
        "d",
        Arc::new(int(4)),
        Expiry::Never,
        Condition::Always,
        30,
        &mut events,
    )
    .unwrap();
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.key.to_string())).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Expire, "a".into()),
            (EventKind::Put, "d".into())
        ]
    );
    assert_eq!(
        m.len(30),
        2,
        "b is expired, so not counted, but still stored"
    );
    put(&m, "e", 5, Expiry::Never, 30).unwrap();
    assert_eq!(put(&m, "f", 6, Expiry::Never, 30), Err(DictError::Full));
}

#[test]
fn lru_eviction_removes_the_least_recently_used_key() {
    let m = mem(Bounds {
        max_entries: Some(2),
        evict_lru: true,
    });
    put(&m, "a", 1, Expiry::Never, 0).unwrap();
    put(&m, "b", 2, Expiry::Never, 0).unwrap();
    assert!(m.get("a", 0).is_some()); // b is now the least recently used
    let mut events = Events::default();
    m.put(
        "c",
        Arc::new(int(3)),
        Expiry::Never,
        Condition::Always,
        0,
        &mut events,
    )
    .unwrap();
    assert_eq!((events[0].kind, &*events[0].key), (EventKind::Delete, "b"));
    assert!(m.get("b", 0).is_none());
    assert!(m.get("a", 0).is_some() && m.get("c", 0).is_some());
}

// ── Conditions ──────────────────────────────────────────────────────────

#[test]
fn put_new_and_compare_and_set() {
    let m = mem(Bounds::default());
    let absent = Condition::Version(None);
    let v1 = m
        .put(
            "a",
            Arc::new(int(1)),
            Expiry::Never,
            absent,
            0,
            &mut Events::default(),
        )
        .unwrap();
    let again = m.put(
        "a",
        Arc::new(int(9)),
        Expiry::Never,
        absent,
        0,
        &mut Events::default(),
    );
    assert_eq!(again, Err(DictError::Conflict));
    let new = m.put(
        "a",
        Arc::new(int(9)),
        Expiry::Never,
        Condition::Absent,
        0,
        &mut Events::default(),
    );
    assert_eq!(new, Err(DictError::Exists));
    let v2 = m
        .put(
            "a",
            Arc::new(int(2)),
            Expiry::Never,
            Condition::Version(Some(v1)),
            0,
            &mut Events::default(),
        )
        .unwrap();
    let stale = m.put(
        "a",
        Arc::new(int(3)),
        Expiry::Never,
        Condition::Version(Some(v1)),
        0,
        &mut Events::default(),
    );
    assert_eq!(stale, Err(DictError::Conflict));
    assert_eq!(m.get("a", 0).map(|(i, v)| (as_int(&i), v)), Some((2, v2)));
}

// ── The front: incr, destroy, names, events, stats ──────────────────────

#[test]
fn incr_counts_from_zero_keeps_the_expiry_and_grows_past_i64() {
    let d = dict();
    assert!(matches!(d.incr("n", 5), Ok(Value::Int(5))));
    d.expire("n", 60_000).unwrap();
    assert!(matches!(d.incr("n", -2), Ok(Value::Int(3))));
    assert!(matches!(d.ttl("n"), Ok(Some(Ttl::Ms(ms))) if ms > 0 && ms <= 60_000));
    d.put("big", int(i64::MAX), None, Condition::Always)
        .unwrap();
    assert!(matches!(d.incr("big", 1), Ok(Value::BigInt(_))));
    assert!(matches!(d.incr("big", -1), Ok(Value::Int(i64::MAX))));
    d.put(
        "s",
        Stored::Plain(Value::Str("x".into())),
        None,
        Condition::Always,
    )
    .unwrap();
    assert_eq!(
        d.incr("s", 1).err(),
        Some(DictError::NotInteger("a string"))
    );
}

#[test]
fn a_destroyed_dict_refuses_everything_and_forgets_its_name() {
    let d = SharedDict::new(DictOptions {
        name: Some("core-test-destroy".into()),
        ..Default::default()
    })
    .unwrap();
    d.put("a", int(1), None, Condition::Always).unwrap();
    assert!(SharedDict::lookup("core-test-destroy").is_some());
    let again = SharedDict::new(DictOptions {
        name: Some("core-test-destroy".into()),
        ..Default::default()
    });
    assert!(matches!(again, Err(DictError::NameTaken(_))));
    assert!(d.destroy());
    assert!(!d.destroy(), "idempotent");
    assert!(SharedDict::lookup("core-test-destroy").is_none());
    assert_eq!(d.get("a").err(), Some(DictError::Destroyed));
    assert_eq!(
        d.put("a", int(1), None, Condition::Always).err(),
        Some(DictError::Destroyed)
    );
    assert_eq!(d.keys().err(), Some(DictError::Destroyed));
    assert_eq!(d.stats().err(), Some(DictError::Destroyed));
}

#[test]
fn deep_values_are_stored_and_dropped_without_recursion() {
    let deep = (0..100_000).fold(Value::None, |v, _| Value::List(vec![v]));
    let d = dict();
    d.put(
        "deep",
        Stored::plain(deep).unwrap(),
        None,
        Condition::Always,
    )
    .unwrap();
    // Dropping it (on delete) must not recurse 100,000 levels.
    d.take("deep").unwrap();
}

#[test]
fn events_are_counted_and_reach_listeners_in_order() {
    let d = dict();
    let rec = Arc::new(Recorder::default());
    d.listen(rec.clone()).unwrap();
    d.put("a", int(1), None, Condition::Always).unwrap();
    d.incr("a", 1).unwrap();
    d.take("a").unwrap();
    d.take("a").unwrap(); // missing: no event
    let got = rec.0.lock().clone();
    assert_eq!(
        got,
        [
            (EventKind::Put, "a".to_string()),
            (EventKind::Put, "a".to_string()),
            (EventKind::Delete, "a".to_string()),
        ]
    );
    let stats = d.stats().unwrap();
    assert_eq!((stats.size, stats.puts, stats.deletes), (0, 2, 1));
}

/// Polls `cond` every few ms until it holds, failing after a generous bound
/// (the machine is loaded: the bound only catches a sweeper that never runs).
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_sweeper_reclaims_expired_keys_and_raises_each_expiry_once() {
    let d = dict();
    let rec = Arc::new(Recorder::default());
    d.listen(rec.clone()).unwrap();
    for i in 0..3_000 {
        d.put(&format!("k{i}"), int(i), Some(1), Condition::Always)
            .unwrap();
    }
    d.put("stays", int(0), None, Condition::Always).unwrap();
    // Nothing read, deleted or written after the puts: only the sweeper
    // can produce these events.
    eventually("every key expired", || {
        rec.0
            .lock()
            .iter()
            .filter(|(k, _)| *k == EventKind::Expire)
            .count()
            == 3_000
    });
    assert_eq!(d.len().unwrap(), 1);
    assert!(d.next_expiry().is_none());
    let stats = d.stats().unwrap();
    assert_eq!(stats.expired_total, 3_000);
    assert_eq!(stats.recent_expiries.len(), crate::limits::RECENT_EXPIRIES);
    let newest = &stats.recent_expiries[0];
    let last_event = rec.0.lock().last().cloned().unwrap();
    assert_eq!(newest.0, last_event.1, "newest first");
    let mut keys: Vec<_> = rec.0.lock().iter().map(|(_, k)| k.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        3_001,
        "each key's expiry raised once (plus its put)"
    );
}

#[test]
fn an_expired_key_is_gone_at_once_without_the_sweeper() {
    let d = dict();
    d.put("a", int(1), Some(30), Condition::Always).unwrap();
    let put_end = now_ms();
    // Whatever the machine's speed: a read that sees "a" started before its
    // TTL ran out, and once it is not visible it never comes back.
    let mut gone_at = None;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let before = now_ms();
        let seen = d.get("a").unwrap().is_some();
        match (seen, gone_at) {
            (true, None) => assert!(before < put_end + 30, "returned after its expiry"),
            (false, None) => gone_at = Some(before),
            (true, Some(_)) => panic!("an expired key came back"),
            (false, Some(_)) => {}
        }
        if gone_at.is_some_and(|at| now_ms() > at + 50) {
            break;
        }
    }
    assert!(gone_at.is_some(), "the key never expired");
    assert_eq!(d.len().unwrap(), 0);
    assert!(d.keys().unwrap().is_empty());
}

#[test]
fn a_hundred_writers_incrementing_lose_nothing() {
    let d = dict();
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let d = d.clone();
            let done = done.clone();
            thread::spawn(move || {
                for _ in 0..1_000 {
                    d.incr("n", 1).unwrap();
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(matches!(d.get("n").unwrap(), Some((ref i, _)) if as_int(i) == 100_000));
    assert_eq!(d.stats().unwrap().puts, 100_000);
}

/// Puts nobody hears of are counted by the memory store's shards; `stats`
/// still counts every one, from many writers on keys of every shard, across
/// a `clear`, and together with the puts the front counts (heard of).
#[test]
fn stats_count_every_put_from_many_writers() {
    let d = dict();
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let d = d.clone();
            thread::spawn(move || {
                for i in 0..2_000 {
                    // Some keys shared by every writer, some its own.
                    let key = if i % 2 == 0 {
                        format!("shared-{}", i % 64)
                    } else {
                        format!("w{w}-{i}")
                    };
                    d.put(&key, int(i), None, Condition::Always).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(d.stats().unwrap().puts, 16 * 2_000);
    d.clear().unwrap();
    assert_eq!(d.stats().unwrap().puts, 16 * 2_000, "kept across clear");
    // Heard of: counted by the front, added to the shards' count.
    let rec = Arc::new(Recorder::default());
    d.listen(rec.clone()).unwrap();
    d.put("heard", int(1), None, Condition::Always).unwrap();
    d.incr("n", 1).unwrap();
    let stats = d.stats().unwrap();
    assert_eq!((stats.puts, stats.size), (16 * 2_000 + 2, 2));
}

#[test]
fn compare_and_set_loops_lose_nothing_under_contention() {
    let d = dict();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let d = d.clone();
            thread::spawn(move || {
                for _ in 0..500 {
                    loop {
                        let (cur, version) = match d.get("n").unwrap() {
                            Some((item, v)) => (as_int(&item), Some(v)),
                            None => (0, None),
                        };
                        let cond = Condition::Version(version);
                        match d.put_with("n", int(cur + 1), Expiry::Keep, cond, &Now::lazy()) {
                            Ok(_) => break,
                            Err(DictError::Conflict) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(as_int(&d.get("n").unwrap().unwrap().0), 8_000);
}

// ── Per-key locks ───────────────────────────────────────────────────────

#[test]
fn a_lock_excludes_other_holders_until_released_or_its_holder_dies() {
    let d = dict();
    let a = Holder::Python(1);
    let b = Holder::Beam(2);
    assert_eq!(d.try_lock("k", a).unwrap(), Ok(()));
    assert_eq!(
        d.try_lock("k", a).unwrap(),
        Ok(()),
        "its holder may take it again"
    );
    assert_eq!(d.try_lock("k", b).unwrap(), Err(a));
    assert!(!d.unlock("k", b).unwrap(), "only the holder releases it");
    assert_eq!(d.release_all(a), 1);
    assert_eq!(d.try_lock("k", b).unwrap(), Ok(()));
    let deadline = Instant::now() + Duration::from_millis(20);
    assert!(!d.lock_wait("k", a, Some(deadline)).unwrap(), "times out");
    assert!(d.unlock("k", b).unwrap());
    assert_eq!(d.lock_holder("k"), None);
}

#[test]
fn threads_waiting_on_a_lock_serialise_a_read_modify_write() {
    let d = dict();
    d.put("n", int(0), None, Condition::Always).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let d = d.clone();
            thread::spawn(move || {
                let me = Holder::Python(t);
                for _ in 0..500 {
                    assert!(d.lock_wait("n", me, None).unwrap());
                    let n = as_int(&d.get("n").unwrap().unwrap().0);
                    d.put("n", int(n + 1), None, Condition::Always).unwrap();
                    assert!(d.unlock("n", me).unwrap());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(as_int(&d.get("n").unwrap().unwrap().0), 4_000);
}

#[test]
fn destroy_releases_locks_and_tells_listeners() {
    #[derive(Default)]
    struct Unlocks(Mutex<Vec<String>>);
    impl Listener for Unlocks {
        fn event(&self, _kind: EventKind, _key: &str, _value: Option<&Item>) {}
        fn unlocked(&self, key: &str) {
            self.0.lock().push(key.to_owned());
        }
    }
    let d = dict();
    let u = Arc::new(Unlocks::default());
    d.listen(u.clone()).unwrap();
    d.try_lock("k", Holder::Beam(1)).unwrap().unwrap();
    d.destroy();
    assert_eq!(*u.0.lock(), ["k"]);
    assert_eq!(d.try_lock("k", Holder::Beam(2)), Err(DictError::Destroyed));
}

/// An instruction-count probe for `valgrind --tool=callgrind` (never a
/// timing assertion): 100,000 puts and 100,000 gets of small integers on
/// 1,000 keys, plus 100,000 TTL'd puts swept at once. Run with
/// `cargo test --release --no-default-features probe_ -- --ignored`.
#[test]
#[ignore]
fn probe_put_get_sweep() {
    let d = dict();
    let keys: Vec<String> = (0..1_000).map(|i| format!("key{i}")).collect();
    for round in 0..100 {
        for k in &keys {
            d.put(k, int(round), None, Condition::Always).unwrap();
            assert!(d.get(k).unwrap().is_some());
        }
    }
    let m = mem(Bounds::default());
    let mut events = Events::default();
    for i in 0..100_000 {
        put(&m, &format!("t{i}"), i, Expiry::At(10), 0).unwrap();
    }
    while m.sweep(20, crate::limits::SWEEP_BATCH, &mut events) > 0 {
        events.clear();
    }
}

/// Telemetry's tap: called only while switched on, with the dict and its
/// events in order, and the key only for a dict that asked for keys.
#[test]
fn the_telemetry_tap_sees_events_only_while_on_and_keys_only_when_asked() {
    type Seen = Mutex<Vec<(u64, EventKind, Option<String>)>>;
    fn seen() -> &'static Seen {
        static SEEN: std::sync::OnceLock<Seen> = std::sync::OnceLock::new();
        SEEN.get_or_init(Default::default)
    }
    telemetry::install(Box::new(|dict, batch| {
        let mut seen = seen().lock();
        for (kind, key) in batch {
            seen.push((dict.id(), kind, key));
        }
    }));
    let of = |id: u64| -> Vec<(EventKind, Option<String>)> {
        seen()
            .lock()
            .iter()
            .filter(|(i, _, _)| *i == id)
            .map(|(_, k, key)| (*k, key.clone()))
            .collect()
    };

    let plain = dict();
    let keyed = dict();
    keyed.set_telemetry_keys(true);

    plain
        .put("before", int(1), None, Condition::Always)
        .unwrap();
    assert!(of(plain.id()).is_empty(), "off: the tap is not called");

    telemetry::set_enabled(true);
    plain.put("a", int(1), None, Condition::Always).unwrap();
    plain.take("a").unwrap();
    keyed.put("k", int(1), None, Condition::Always).unwrap();
    telemetry::set_enabled(false);
    plain.put("after", int(1), None, Condition::Always).unwrap();

    assert_eq!(
        of(plain.id()),
        vec![(EventKind::Put, None), (EventKind::Delete, None)]
    );
    assert_eq!(of(keyed.id()), vec![(EventKind::Put, Some("k".to_owned()))]);
}

/// A listener that wants nothing (the BEAM side of a dict nobody
/// subscribed to).
struct Idle;
impl Listener for Idle {
    fn event(&self, _kind: EventKind, _key: &str, _value: Option<&Item>) {}
}

/// Instruction counts of the front's hot path (callgrind, not a timing
/// assertion): 100,000 gets, then 100,000 puts, of one small key on a dict
/// with an idle listener, as a dict made by the BEAM has. Run with
/// `valgrind --tool=callgrind --toggle-collect='*probe_front_*'` on
/// `cargo test --release --no-default-features probe_front -- --ignored`.
#[test]
#[ignore]
fn probe_front_get() {
    let d = dict();
    d.listen_idle(Arc::new(Idle)).unwrap();
    d.put("key", int(1), None, Condition::Always).unwrap();
    for _ in 0..100_000 {
        std::hint::black_box(d.get(std::hint::black_box("key")).unwrap());
    }
}

/// See [`probe_front_get`].
#[test]
#[ignore]
fn probe_front_put() {
    let d = dict();
    d.listen_idle(Arc::new(Idle)).unwrap();
    for i in 0..100_000 {
        std::hint::black_box(
            d.put(std::hint::black_box("key"), int(i), None, Condition::Always)
                .unwrap(),
        );
    }
}

/// A listener hears of every put that began after it was added (through
/// `listen`, or `listen_idle` then `set_listening` as a BEAM subscriber
/// is), while writers put all along; and every put is counted, heard of or
/// not.
#[test]
fn a_listener_added_while_writers_put_hears_every_put_begun_after() {
    use std::sync::atomic::AtomicBool;
    for round in 0..20 {
        let d = dict();
        d.listen_idle(Arc::new(Idle)).unwrap();
        let rec = Arc::new(Recorder::default());
        let listening = Arc::new(AtomicBool::new(false));
        let heard_after = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let d = d.clone();
                let listening = listening.clone();
                let heard_after = heard_after.clone();
                thread::spawn(move || {
                    let (mut puts, mut must) = (0u64, Vec::new());
                    let mut after = 0;
                    while after < 200 {
                        let began_after = listening.load(Ordering::SeqCst);
                        let key = format!("w{w}-{puts}");
                        d.put(&key, int(1), None, Condition::Always).unwrap();
                        puts += 1;
                        if began_after {
                            must.push(key);
                            after += 1;
                            if after == 200 {
                                heard_after.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    (puts, must)
                })
            })
            .collect();
        // Some puts first, heard by nobody.
        while d.len().unwrap() < 50 {
            thread::yield_now();
        }
        if round % 2 == 0 {
            d.listen(rec.clone()).unwrap();
        } else {
            d.listen_idle(rec.clone()).unwrap();
            d.set_listening(true);
        }
        listening.store(true, Ordering::SeqCst);
        let mut total = 0;
        let mut must = Vec::new();
        for w in writers {
            let (puts, m) = w.join().unwrap();
            total += puts;
            must.extend(m);
        }
        let heard: std::collections::HashSet<String> =
            rec.0.lock().iter().map(|(_, k)| k.clone()).collect();
        for key in &must {
            assert!(heard.contains(key), "round {round}: {key} not heard of");
        }
        assert_eq!(d.stats().unwrap().puts, total, "every put counted");
    }
}

/// `destroy` while writers put and increment: once it returned, every
/// operation fails with `Destroyed` and nothing is left.
#[test]
fn destroy_while_writing_refuses_every_later_operation() {
    use std::sync::atomic::AtomicBool;
    for _ in 0..20 {
        let d = dict();
        let destroyed = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let d = d.clone();
                let destroyed = destroyed.clone();
                thread::spawn(move || {
                    for i in 0.. {
                        let after = destroyed.load(Ordering::SeqCst);
                        let put = d.put(&format!("w{w}-{i}"), int(i), None, Condition::Always);
                        let incr = d.incr("n", 1).map(|_| ());
                        for r in [put.map(|_| ()), incr] {
                            match r {
                                Ok(()) => assert!(!after, "a write landed after destroy"),
                                Err(DictError::Destroyed) => {}
                                Err(other) => panic!("unexpected {other:?}"),
                            }
                        }
                        if after {
                            return;
                        }
                    }
                })
            })
            .collect();
        while d.len().unwrap_or(1) < 20 {
            thread::yield_now();
        }
        assert!(d.destroy());
        destroyed.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(d.len(), Err(DictError::Destroyed));
        assert_eq!(d.get("n").map(|_| ()), Err(DictError::Destroyed));
        assert_eq!(d.stats().map(|_| ()), Err(DictError::Destroyed));
    }
}
