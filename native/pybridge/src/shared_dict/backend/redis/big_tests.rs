//! Big records against a real `redis-server`: read, taken and carried on
//! events through the size-scaled path of [`super::big`], intact, with
//! nothing parked left behind.

use std::time::Duration;

use super::big::{big_timeout, BIG};
use super::test_support::{node, until_within, Seen, TestServer};
use super::COMMAND_TIMEOUT;
use crate::convert::Value;
use crate::shared_dict::{Condition, EventKind, Item, Stored};

fn bytes_of(item: Option<Item>) -> Option<Vec<u8>> {
    item.map(|i| match &*i {
        Stored::Plain(Value::Bytes(b)) => b.clone(),
        other => panic!("not bytes: {:?}", std::mem::discriminant(other)),
    })
}

/// How long a big value's event may take to come (a loaded machine,
/// megabytes).
const WITHIN: Duration = Duration::from_secs(30);

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
    let (a, _) = node(&server.url(), "big");
    let (b, _) = node(&server.url(), "big");
    // Asks for values, like a Python callback.
    let seen = Seen::on(&a, true);
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
    until_within("the big put's event with its value", WITHIN, || {
        seen.any(|(kind, key, v)| {
            *kind == EventKind::Put
                && key == "k"
                && matches!(v.as_deref(), Some(Stored::Plain(Value::Bytes(b))) if *b == data)
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
    until_within("the big take's delete event", WITHIN, || {
        seen.any(|(kind, key, _)| *kind == EventKind::Delete && key == "k")
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
