//! Dict keys and set members: inserting them, and the error for a map key
//! (or `MapSet` member) that is equal in Python to an earlier one.

use pyo3::ffi;
use pyo3::prelude::*;

use crate::convert::keys::{beam_text, canonical, Target};
use crate::convert::{ConvertError, Value};

/// Sets `pairs[index]`, converted to `k` and `v`, in `dict`.
pub(super) fn dict_set(
    dict: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
    v: &Bound<'_, PyAny>,
    pairs: &[(Value, Value)],
    index: usize,
) -> Result<(), ConvertError> {
    // SAFETY: all three are valid objects (Bound) and the GIL is held;
    // PyDict_SetItem does not steal references. `dict` is a dict we created.
    let rc = unsafe { ffi::PyDict_SetItem(dict.as_ptr(), k.as_ptr(), v.as_ptr()) };
    if rc != 0 {
        let err = PyErr::fetch(dict.py());
        let kind = pairs.get(index).map_or("a key", |p| p.0.kind());
        return Err(ConvertError(format!(
            "cannot use {kind} as a Python dict key: {err}"
        )));
    }
    // SAFETY: `dict` is a live dict.
    if usize::try_from(unsafe { ffi::PyDict_Size(dict.as_ptr()) }) != Ok(index + 1) {
        let keys: Vec<&Value> = pairs.iter().map(|(k, _)| k).collect();
        return Err(collision("map", "keys", &keys, index));
    }
    Ok(())
}

/// Adds `items[index]`, converted to `item`, to `set`.
pub(super) fn set_add(
    set: &Bound<'_, PyAny>,
    item: &Bound<'_, PyAny>,
    items: &[Value],
    index: usize,
) -> Result<(), ConvertError> {
    // SAFETY: both are valid objects and the GIL is held; PySet_Add does not
    // steal the reference. `set` is a set we created.
    let rc = unsafe { ffi::PySet_Add(set.as_ptr(), item.as_ptr()) };
    if rc != 0 {
        let err = PyErr::fetch(set.py());
        let kind = items.get(index).map_or("an item", Value::kind);
        return Err(ConvertError(format!(
            "cannot put {kind} in a Python set: {err}"
        )));
    }
    // SAFETY: `set` is a live set.
    if usize::try_from(unsafe { ffi::PySet_Size(set.as_ptr()) }) != Ok(index + 1) {
        let members: Vec<&Value> = items.iter().collect();
        return Err(collision("MapSet", "members", &members, index));
    }
    Ok(())
}

/// Key `index` of a map (or member of a `MapSet`) is equal in Python to an
/// earlier one, so the dict (or set) would silently keep only one: an
/// error naming both, as far as they can be told apart.
fn collision(what: &str, keys_word: &str, keys: &[&Value], index: usize) -> ConvertError {
    let key = keys.get(index).copied();
    let canon = key.and_then(|k| canonical(k, Target::Python));
    let earlier = canon.and_then(|c| {
        keys.iter()
            .take(index)
            .position(|k| canonical(k, Target::Python).as_ref() == Some(&c))
    });
    let text = |k: Option<&Value>| k.map_or_else(|| "?".to_owned(), beam_text);
    let named = match earlier {
        Some(first) => format!("{} and {}", text(keys.get(first).copied()), text(key)),
        None => format!("{} and an earlier one", text(key)),
    };
    ConvertError(format!(
        "cannot convert a {what} whose {keys_word} {named} are equal in Python, \
         and a {} holds each only once",
        if what == "map" { "dict" } else { "set" }
    ))
}
