//! BEAM map keys (and `MapSet` members) that would be one Python key.
//!
//! `"a"` and `:a` both become the str `'a'`; `1`, `1.0` and `true` are
//! equal in Python. A dict built from them keeps the last value only, so the
//! decoder fails instead, naming the two terms as an Elixir programmer
//! writes them (an atom and a binary look alike once decoded, so the names
//! come from the terms). The executor checks again when it builds the dict
//! (`convert::to_py`), which also catches `%Py.Object{}` keys whose objects
//! are equal.

use rustler::{Term, TermType};

use crate::convert::keys::{beam_text, first_collision, Target};
use crate::convert::{ConvertError, Value};

/// The error for two of the `n` keys (key `i` is `key(i)`, decoded from
/// `term(i)`) that are equal in Python, if any; `what` is "map" or
/// "MapSet".
pub(super) fn python_collision<'v, 'a>(
    what: &str,
    n: usize,
    term: impl Fn(usize) -> Term<'a>,
    key: impl Fn(usize) -> &'v Value,
) -> Option<ConvertError> {
    if !may_collide((0..n).map(|i| (term(i), key(i)))) {
        return None;
    }
    let (first, second) = first_collision((0..n).map(&key), Target::Python)?;
    let name = |i: usize| elixir_text(term(i), key(i));
    let (words, holder) = if what == "map" {
        ("keys", "dict")
    } else {
        ("members", "set")
    };
    Some(ConvertError(format!(
        "cannot convert a {what} whose {words} {} and {} are equal in Python, \
         and a {holder} holds each only once",
        name(first),
        name(second)
    )))
}

/// Keys of one kind (all atoms, all binaries, all integers) are distinct in
/// Python when they are distinct terms: only a mix needs the full check.
fn may_collide<'v, 'a>(keys: impl Iterator<Item = (Term<'a>, &'v Value)>) -> bool {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Atom,
        Binary,
        Integer,
    }
    let mut seen: Option<Class> = None;
    for (term, key) in keys {
        let class = match (term.get_type(), key) {
            (TermType::Atom, Value::Str(_)) => Class::Atom,
            (TermType::Binary, _) => Class::Binary,
            (TermType::Integer, _) => Class::Integer,
            _ => return true,
        };
        match seen {
            None => seen = Some(class),
            Some(c) if c != class => return true,
            Some(_) => {}
        }
    }
    false
}

/// `term` as Elixir writes it, short: atoms and binaries from the term
/// itself, anything else from its decoded value.
fn elixir_text(term: Term<'_>, decoded: &Value) -> String {
    match (term.get_type(), decoded) {
        (TermType::Atom, Value::Str(name)) => {
            let plain = name
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '@');
            if plain {
                format!(":{name}")
            } else {
                format!(":{name:?}")
            }
        }
        _ => beam_text(decoded),
    }
}
