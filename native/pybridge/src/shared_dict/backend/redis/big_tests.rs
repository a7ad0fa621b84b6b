//! Big records against a real `redis-server`: read, taken and carried on
//! events through the size-scaled path of [`super::big`], intact, with
//! nothing parked left behind.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::big::{big_timeout, BIG};
use super::tests::TestServer;
use super::{Redis, COMMAND_TIMEOUT};
use crate::convert::Value;
use crate::shared_dict::{Condition, EventKind, Item, Listener, SharedDict, Stored};

/// An event: its kind, key and the bytes of its value.
type Seen = (EventKind, String, Option<Vec<u8>>);

/// Records each event with the bytes of its value (a listener that wants
/// values, like a Python callback).
#[derive(Default)]
struct Values(Mutex<Vec<Seen>>);

impl Listener for Values {
    fn wants_values(&self) -> bool {
        true
    }
    fn event(&self, kind: EventKind, key: &str, value: Option<&Item>) {
        let bytes = value.and_then(|v| match &**v {
            Stored::Plain(Value::Bytes(b)) => Some(b.clone()),
            _ => None,
        });
        self.0.lock().push((kind, key.to_owned(), bytes));
    }
}

fn node(url: &str, name: &str) -> Arc<SharedDict> {
    let r = Redis::open(url, "t", Some(name), 2).expect("opens");
    SharedDict::with_backend(None, Box::new(r)).expect("dict")
}

fn bytes_of(item: Option<Item>) -> Option<Vec<u8>> {
    item.map(|i| match &*i {
        Stored::Plain(Value::Bytes(b)) => b.clone(),
        other => panic!("not bytes: {:?}", std::mem::discriminant(other)),
    })
}

/// Waits (up to 30 s: a loaded machine, megabytes) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never happened: {what}");
}

#[test]
fn the_deadline_of_a_big_record_grows_with_its_size() {
    assert_eq!(big_timeout(BIG), COMMAND_TIMEOUT);
    assert_eq!(
        big_timeout(100 << 20),
        COMMAND_TIMEOUT + Duration::from_secs(25)
    );
}

#[test]
fn a_big_value_is_read_taken_and_carried_on_events_intact() {
    let server = TestServer::start();
    let a = node(&server.url(), "big");
    let b = node(&server.url(), "big");
    let seen = Arc::new(Values::default());
    a.listen(seen.clone()).unwrap();
    let data: Vec<u8> = (0..3 * BIG + 7).map(|i| (i % 251) as u8).collect();
    let small = vec![7u8; 10];

    b.put(
        "k",
        Stored::Plain(Value::Bytes(data.clone())),
        None,
        Condition::Always,
    )
    .unwrap();
    b.put(
        "s",
        Stored::Plain(Value::Bytes(small.clone())),
        None,
        Condition::Always,
    )
    .unwrap();
    // Read by size first, then on its own.
    assert_eq!(
        bytes_of(a.get("k").unwrap().map(|g| g.0.into_item())),
        Some(data.clone())
    );
    assert_eq!(
        bytes_of(a.get("s").unwrap().map(|g| g.0.into_item())),
        Some(small)
    );
    // The follower reads the big put's value back for the listener.
    eventually("the big put's event with its value", || {
        seen.0.lock().iter().any(|(kind, key, v)| {
            *kind == EventKind::Put && key == "k" && v.as_deref() == Some(&data[..])
        })
    });

    // Taken: parked by the script, then read and deleted.
    assert_eq!(bytes_of(a.take("k").unwrap()), Some(data.clone()));
    assert!(b.get("k").unwrap().is_none());
    assert!(a.take("k").unwrap().is_none());
    let parked: Vec<String> = redis::cmd("KEYS")
        .arg("*park*")
        .query(&mut server.conn())
        .unwrap();
    assert!(parked.is_empty(), "left parked: {parked:?}");
    eventually("the big take's delete event", || {
        seen.0
            .lock()
            .iter()
            .any(|(kind, key, _)| *kind == EventKind::Delete && key == "k")
    });
    // Overwriting a big value with a small one, then a conditional put on it.
    b.put(
        "k",
        Stored::Plain(Value::Bytes(data.clone())),
        None,
        Condition::Always,
    )
    .unwrap();
    let (_, ver) = a.get("k").unwrap().unwrap();
    b.put(
        "k",
        Stored::Plain(Value::Bytes(vec![1])),
        None,
        Condition::Version(Some(ver)),
    )
    .unwrap();
    assert_eq!(
        bytes_of(a.get("k").unwrap().map(|g| g.0.into_item())),
        Some(vec![1])
    );
}
