//! What a dict stores ([`Stored`]) and what its operations fail with
//! ([`DictError`]).

use crate::convert::Value;

/// A stored value.
#[derive(Debug)]
pub enum Stored {
    /// Plain data (never [`Value::Object`]).
    Plain(Value),
    /// A Python object that is not plain data, pickled: its type
    /// (`"module.Class"`) and the pickle.
    Pickled { type_name: String, data: Vec<u8> },
}

impl Drop for Stored {
    fn drop(&mut self) {
        if let Stored::Plain(v) = self {
            if v.is_container() {
                // Deep values would recurse once per level in plain drop.
                std::mem::replace(v, Value::None).dispose();
            }
        }
    }
}

impl Stored {
    /// `value` as plain data to store; a Python object inside it cannot be.
    pub fn plain(value: Value) -> Result<Stored, DictError> {
        // Scalars, the common case, without the walk's allocation.
        if !value.is_container() && !matches!(value, Value::Object(_)) {
            return Ok(Stored::Plain(value));
        }
        let mut pending = vec![&value];
        while let Some(v) = pending.pop() {
            match v {
                Value::Object(o) => {
                    return Err(DictError::Unstorable(format!(
                        "a Python object ({}) cannot be stored from the BEAM: \
                         store plain data, or store it from Python, where it is pickled",
                        o.type_name
                    )))
                }
                Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
                    pending.extend(items.iter())
                }
                Value::Map(pairs) => {
                    for (k, v) in pairs {
                        pending.push(k);
                        pending.push(v);
                    }
                }
                _ => {}
            }
        }
        Ok(Stored::Plain(value))
    }
}

/// Why an operation on a dict failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DictError {
    /// The dict was destroyed.
    Destroyed,
    /// `max_entries` reached and no eviction asked for.
    Full,
    /// `put_new` of a key that exists.
    Exists,
    /// A compare-and-set lost: the key changed since it was read.
    Conflict,
    /// `incr` of a value that is not an integer (its kind).
    NotInteger(&'static str),
    /// A value that cannot be stored (why).
    Unstorable(String),
    /// `new` with a name another live dict has.
    NameTaken(String),
    /// The backend failed (a full disk, a read-only or corrupt file, an
    /// unreachable server): what it said. Nothing was changed by the
    /// operation that got it.
    Backend(String),
}

impl std::fmt::Display for DictError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DictError::Destroyed => f.write_str("the shared dict was destroyed"),
            DictError::Full => f.write_str("the shared dict is full (max_entries)"),
            DictError::Exists => f.write_str("the key exists"),
            DictError::Conflict => f.write_str("the key changed meanwhile"),
            DictError::NotInteger(kind) => write!(f, "cannot increment {kind}: not an integer"),
            DictError::Unstorable(why) => f.write_str(why),
            DictError::NameTaken(name) => write!(f, "a shared dict named {name:?} exists"),
            DictError::Backend(why) => f.write_str(why),
        }
    }
}
