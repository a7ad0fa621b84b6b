//! What the memory and SQLite backends' tests share: integer items and an
//! unconditional write through the [`Backend`] trait.

use std::sync::Arc;

use super::{Backend, Condition, Events, Expiry, Item, Millis};
use crate::convert::Value;
use crate::shared_dict::{DictError, Stored};

pub(super) fn int(i: i64) -> Item {
    Arc::new(Stored::Plain(Value::Int(i)))
}

pub(super) fn as_int(item: &Stored) -> i64 {
    match item {
        Stored::Plain(Value::Int(i)) => *i,
        other => panic!("not an int: {other:?}"),
    }
}

/// Writes `i` under `key` whatever is there; the events are dropped.
pub(super) fn put(
    b: &impl Backend,
    key: &str,
    i: i64,
    expiry: Expiry,
    now: Millis,
) -> Result<u64, DictError> {
    b.put(
        key,
        int(i).into(),
        expiry,
        Condition::Always,
        now,
        &mut Events::default(),
    )
}
