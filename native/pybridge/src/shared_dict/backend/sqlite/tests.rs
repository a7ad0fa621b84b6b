//! The SQLite backend against real files in a scratch directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::*;
use crate::convert::Value;
use crate::shared_dict::backend::test_support::{as_int, int, put};
use crate::shared_dict::{DictOptions, Listener, SharedDict};

/// A new empty directory for one test.
fn scratch() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pybridge-sqlite-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn writes_read_back_with_versions_and_conditions() {
    let path = scratch().join("d.sqlite");
    let s = Sqlite::open(&path, "", 1).expect("open");
    let now = now_ms();
    let v1 = put(&s, "a", 1, Expiry::Never, now).expect("put");
    let (item, version) = s.get("a", now).expect("get").expect("live");
    assert_eq!((as_int(&item), version), (1, v1));
    let v2 = put(&s, "a", 2, Expiry::Never, now).expect("put");
    assert!(v2 > v1);
    let mut ev = Events::default();
    let cas = s.put(
        "a",
        int(3).into(),
        Expiry::Keep,
        Condition::Version(Some(v1)),
        now,
        &mut ev,
    );
    assert_eq!(cas, Err(DictError::Conflict));
    let new = s.put(
        "a",
        int(3).into(),
        Expiry::Keep,
        Condition::Absent,
        now,
        &mut ev,
    );
    assert_eq!(new, Err(DictError::Exists));
    assert!(ev.is_empty(), "a refused write reports nothing");
    let mut add = |cur: Option<&Stored>| Ok(Stored::Plain(Value::Int(cur.map_or(0, as_int) + 10)));
    let item = s.modify("a", &mut add, now, &mut ev).expect("modify");
    assert_eq!(as_int(&item), 12);
    assert_eq!(s.len(now), Ok(1));
    assert_eq!(s.keys(now).expect("keys"), vec![Arc::<str>::from("a")]);
    let removed = s
        .remove("a", now, &mut ev)
        .expect("remove")
        .expect("was there");
    assert_eq!(as_int(&removed), 12);
    let kinds: Vec<EventKind> = ev.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventKind::Put, EventKind::Delete]);
}

#[test]
fn data_and_absolute_expiries_survive_reopening() {
    let path = scratch().join("d.sqlite");
    let now = now_ms();
    {
        let s = Sqlite::open(&path, "", 1).expect("open");
        put(&s, "kept", 1, Expiry::Never, now).expect("put");
        put(&s, "later", 2, Expiry::At(now + 3_600_000), now).expect("put");
        s.close();
    }
    let s = Sqlite::open(&path, "", 2).expect("reopen");
    assert_eq!(
        as_int(&s.get("kept", now).expect("get").expect("live").0),
        1
    );
    let left = s
        .expiry("later", now)
        .expect("expiry")
        .expect("live")
        .expect("has one");
    // The same absolute time, give or take the clocks' offset rounding.
    assert!(
        left.abs_diff(now + 3_600_000) <= 5,
        "{left} vs {}",
        now + 3_600_000
    );
}

#[test]
fn prefixes_keep_dicts_apart_in_one_file() {
    let path = scratch().join("d.sqlite");
    let a = Sqlite::open(&path, "a:", 1).expect("open");
    let b = Sqlite::open(&path, "b:", 1).expect("open");
    let now = now_ms();
    put(&a, "k", 1, Expiry::Never, now).expect("put");
    assert_eq!(b.get("k", now).expect("get").map(|x| x.1), None);
    assert_eq!(b.clear(now), Ok(0));
    assert_eq!(a.len(now), Ok(1));
}

#[test]
fn a_second_connection_sees_committed_writes() {
    let path = scratch().join("d.sqlite");
    let one = Sqlite::open(&path, "", 1).expect("open");
    let two = Sqlite::open(&path, "", 1).expect("open");
    let now = now_ms();
    put(&one, "k", 7, Expiry::Never, now).expect("put");
    assert_eq!(as_int(&two.get("k", now).expect("get").expect("seen").0), 7);
    let v = put(&two, "k", 8, Expiry::Never, now).expect("put");
    assert_eq!(one.get("k", now).expect("get").expect("seen").1, v);
}

/// Counts events.
#[derive(Default)]
struct Count(parking_lot::Mutex<Vec<(EventKind, String)>>);

impl Listener for Count {
    fn event(&self, kind: EventKind, key: &str, _value: Option<&Item>) {
        self.0.lock().push((kind, key.to_owned()));
    }
}

fn open_dict(path: &Path) -> Arc<SharedDict> {
    SharedDict::new(DictOptions {
        backend: BackendSpec::Sqlite(path.to_owned()),
        ..DictOptions::default()
    })
    .expect("open dict")
}

use super::super::BackendSpec;

#[test]
fn keys_expired_while_closed_are_never_read_and_raise_one_event_at_open() {
    let path = scratch().join("d.sqlite");
    {
        let d = open_dict(&path);
        d.put(
            "gone",
            Stored::Plain(Value::Int(1)),
            Some(3_600_000),
            Condition::Always,
        )
        .expect("put");
        d.put(
            "stays",
            Stored::Plain(Value::Int(2)),
            None,
            Condition::Always,
        )
        .expect("put");
        d.destroy();
    }
    // The key's time passes while nothing has the file open.
    let c = Connection::open(&path).expect("raw open");
    c.execute(
        "UPDATE pybridge_entries SET expires_at = ?1 WHERE key = 'gone'",
        params![i64::try_from(wall_ms()).expect("wall") - 1000],
    )
    .expect("age the key");
    drop(c);
    let d = open_dict(&path);
    assert!(d.get("gone").expect("get").is_none(), "never returned");
    assert_eq!(d.len(), Ok(1));
    let seen = Arc::new(Count::default());
    d.listen(seen.clone()).expect("listen");
    assert_eq!(d.expire_due(), Ok(1));
    assert_eq!(d.expire_due(), Ok(0));
    assert_eq!(
        *seen.0.lock(),
        vec![(EventKind::Expire, "gone".to_owned())],
        "one event"
    );
    d.destroy();
    let again = open_dict(&path);
    assert_eq!(again.expire_due(), Ok(0), "raised once, not at every open");
    assert_eq!(again.keys().expect("keys"), vec![Arc::<str>::from("stays")]);
    again.destroy();
}

#[test]
fn destroying_a_durable_dict_keeps_its_data() {
    let path = scratch().join("d.sqlite");
    let d = open_dict(&path);
    d.put("k", Stored::Plain(Value::Int(1)), None, Condition::Always)
        .expect("put");
    assert!(d.destroy());
    assert!(matches!(d.get("k"), Err(DictError::Destroyed)));
    let again = open_dict(&path);
    assert_eq!(again.len(), Ok(1));
    again.destroy();
}

/// Opening `path` fails with a backend error that says `says`.
fn assert_open_fails(path: &std::path::Path, says: &str) {
    let err = Sqlite::open(path, "", 1).err().expect("must fail");
    assert!(
        matches!(&err, DictError::Backend(m) if m.contains(says)),
        "{err:?}"
    );
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let path = scratch().join("no/such/dir/d.sqlite");
    assert_open_fails(&path, "does not exist");
}

#[test]
fn a_corrupt_file_is_a_clear_error() {
    let path = scratch().join("d.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).expect("write junk");
    assert_open_fails(&path, "not a database");
}

#[test]
fn a_corrupt_value_is_an_error_not_a_panic() {
    let path = scratch().join("d.sqlite");
    let s = Sqlite::open(&path, "", 1).expect("open");
    let now = now_ms();
    put(&s, "k", 1, Expiry::Never, now).expect("put");
    let c = Connection::open(&path).expect("raw open");
    c.execute("UPDATE pybridge_entries SET value = x'01ff'", [])
        .expect("corrupt");
    let err = s.get("k", now).expect_err("must fail");
    assert!(
        matches!(&err, DictError::Backend(m) if m.contains("unreadable")),
        "{err:?}"
    );
    assert!(s.entries(now).is_err());
    // It can still be replaced or removed.
    assert!(s
        .remove("k", now, &mut Events::default())
        .expect("remove")
        .is_none());
    put(&s, "k", 2, Expiry::Never, now).expect("put");
    assert_eq!(as_int(&s.get("k", now).expect("get").expect("live").0), 2);
}

#[test]
fn concurrent_writers_share_commits_and_each_gets_its_own_result() {
    let path = scratch().join("d.sqlite");
    let s = Arc::new(Sqlite::open(&path, "", 1).expect("open"));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let now = now_ms();
                let mut ev = Events::default();
                // Exactly one put_new of "once" wins.
                let won = s
                    .put(
                        "once",
                        int(t).into(),
                        Expiry::Never,
                        Condition::Absent,
                        now,
                        &mut ev,
                    )
                    .is_ok();
                let mut add =
                    |cur: Option<&Stored>| Ok(Stored::Plain(Value::Int(cur.map_or(0, as_int) + 1)));
                for _ in 0..50 {
                    s.modify("n", &mut add, now, &mut ev).expect("incr");
                }
                (won, ev.len())
            })
        })
        .collect();
    let results: Vec<(bool, usize)> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert_eq!(results.iter().filter(|(won, _)| *won).count(), 1);
    // Events only for what each thread's own writes did.
    for (won, events) in &results {
        assert_eq!(*events, 50 + usize::from(*won));
    }
    let now = now_ms();
    assert_eq!(as_int(&s.get("n", now).expect("get").expect("live").0), 800);
    // Durable: a fresh connection sees it all.
    let again = Sqlite::open(&path, "", 1).expect("reopen");
    assert_eq!(
        as_int(&again.get("n", now).expect("get").expect("live").0),
        800
    );
}

#[test]
fn a_write_that_panics_is_an_error_and_leaves_no_trace() {
    let path = scratch().join("d.sqlite");
    let s = Sqlite::open(&path, "", 1).expect("open");
    let now = now_ms();
    put(&s, "k", 1, Expiry::Never, now).expect("put");
    let mut boom = |_: Option<&Stored>| -> Result<Stored, DictError> { panic!("boom") };
    let err = s
        .modify("k", &mut boom, now, &mut Events::default())
        .expect_err("a panic is an error");
    assert!(
        matches!(&err, DictError::Backend(m) if m.contains("panicked")),
        "{err:?}"
    );
    put(&s, "other", 2, Expiry::Never, now).expect("later writes work");
    assert_eq!(as_int(&s.get("k", now).expect("get").expect("live").0), 1);
    let again = Sqlite::open(&path, "", 1).expect("reopen");
    assert_eq!(again.len(now), Ok(2));
}

#[test]
fn a_batch_whose_failure_was_forgotten_is_never_reported_committed() {
    let dir = scratch();
    let s = Sqlite::open(&dir.join("forgotten.db"), "", 1).expect("open");
    {
        let mut done = s.batches.lock();
        done.finished = 10;
        done.forgotten = 4;
        done.failed
            .insert(7, DictError::Backend("disk full".into()));
    }
    assert!(matches!(s.wait_for(3), Err(DictError::Backend(why)) if why.contains("not kept")));
    assert!(matches!(s.wait_for(7), Err(DictError::Backend(why)) if why == "disk full"));
    assert!(s.wait_for(5).is_ok());
    assert!(s.wait_for(10).is_ok());
}

#[test]
fn versions_never_repeat_across_processes_reopens_and_rolled_back_writes() {
    let path = scratch().join("d.sqlite");
    let now = now_ms();
    let one = Sqlite::open(&path, "", 1).expect("open");
    let two = Sqlite::open(&path, "", 1).expect("open");
    // A write that reserved versions and was then rolled back: its block
    // may be reserved again by the other process, so it is not used.
    let failed = one.write(&mut Events::default(), |tx, _| {
        one.next_version(tx)?;
        Err::<(), _>(DictError::Conflict)
    });
    assert_eq!(failed, Err(DictError::Conflict));
    let mut seen = std::collections::HashSet::new();
    for i in 0..20 {
        let s = if i % 3 == 0 { &one } else { &two };
        let v = put(s, "k", i, Expiry::Never, now).expect("put");
        assert!(seen.insert(v), "version {v} of k handed out twice");
        assert_eq!(one.get("k", now).expect("get").expect("live").1, v);
    }
    one.close();
    let again = Sqlite::open(&path, "", 1).expect("reopen");
    let v = put(&again, "k", 99, Expiry::Never, now).expect("put");
    assert!(
        seen.insert(v),
        "version {v} of k handed out again after reopening"
    );
}

#[test]
fn a_put_of_a_new_key_writes_one_page() {
    let path = scratch().join("d.sqlite");
    let s = Sqlite::open(&path, "", 1).expect("open");
    let now = now_ms();
    put(&s, "first", 0, Expiry::Never, now).expect("put");
    let page: u32 = s
        .read(|c| c.query_row("PRAGMA page_size", [], |r| r.get(0)))
        .expect("page size");
    let wal = |p: &Path| {
        std::fs::metadata(format!("{}-wal", p.display()))
            .expect("wal")
            .len()
    };
    let before = wal(&path);
    for i in 0..10 {
        put(&s, &format!("k{i}"), i, Expiry::Never, now).expect("put");
        // A write its condition refuses reserves no versions, so it does
        // not make the next write reserve a block (a second page).
        let refused = s.put(
            "first",
            int(i).into(),
            Expiry::Keep,
            Condition::Absent,
            now,
            &mut Events::default(),
        );
        assert_eq!(refused, Err(DictError::Exists));
    }
    // A WAL frame is a page and its 24-byte header; one per commit (the
    // refused writes commit nothing).
    assert_eq!(wal(&path) - before, 10 * (u64::from(page) + 24));
}
