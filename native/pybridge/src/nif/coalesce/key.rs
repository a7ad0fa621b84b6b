//! The in-flight table's keys: `{group, key}` in the external term format,
//! each of the two written by [`write_term`] when it is made of the usual
//! terms (binaries, floats, integers, atoms, lists and tuples of these),
//! straight into the buffer the flight keeps, and by `enif_term_to_binary`
//! otherwise ([`write_element`]). A term always takes the same way, and
//! either way writes valid external term format (which reads back as one
//! term only): two keys are one exactly when the terms are equal (`1` and
//! `1.0` differ, as in a match). A group's keys all start with the same
//! bytes ([`group_prefix`]), its encoding ([`group_encoding`]).

use std::hash::BuildHasher;
use std::mem::MaybeUninit;
use std::sync::LazyLock;

use rustler::sys::{
    c_char, c_uint, enif_get_atom, enif_get_double, enif_get_int64, enif_get_list_cell,
    enif_get_tuple, enif_is_empty_list, enif_term_to_binary, ErlNifBinary, ErlNifCharEncoding,
    ErlNifTerm,
};
use rustler::{Env, Error, NifResult, OwnedBinary, Term, TermType};

use crate::coalesce::Key;

static HASHER: LazyLock<foldhash::fast::RandomState> = LazyLock::new(Default::default);

/// The bytes of a key before its group's: the version byte and a 2-tuple's
/// header (SMALL_TUPLE_EXT, arity 2).
const PAIR_HEADER: [u8; 3] = [131, 104, 2];

/// `term` in the external term format, in a binary of its own.
fn encode(term: Term<'_>) -> NifResult<OwnedBinary> {
    let mut bin = MaybeUninit::<ErlNifBinary>::uninit();
    // SAFETY: `term` is a live term of its environment, and
    // enif_term_to_binary writes `bin` (a binary it allocates) when it
    // returns non-zero.
    let ok = unsafe {
        enif_term_to_binary(term.get_env().as_c_arg(), term.as_c_arg(), bin.as_mut_ptr())
    };
    if ok == 0 {
        return Err(Error::RaiseAtom("enomem"));
    }
    // SAFETY: initialised above; the OwnedBinary releases it when dropped.
    Ok(unsafe { OwnedBinary::from_raw(bin.assume_init()) })
}

/// The arity of `term` and a pointer to its elements when it is a tuple
/// (the elements live as long as `term`).
pub fn tuple_elems(term: Term<'_>) -> Option<(usize, *const ErlNifTerm)> {
    let mut arity = 0;
    let mut elems: *const ErlNifTerm = std::ptr::null();
    // SAFETY: `term` is a live term of its environment; enif_get_tuple
    // only writes the two out-parameters, `elems` then pointing at `arity`
    // terms that live as long as `term`.
    let ok = unsafe {
        enif_get_tuple(
            term.get_env().as_c_arg(),
            term.as_c_arg(),
            &mut arity,
            &mut elems,
        )
    };
    if ok == 0 {
        return None;
    }
    usize::try_from(arity).ok().map(|n| (n, elems))
}

/// How deep [`write_term`] goes before it leaves a term to
/// `enif_term_to_binary`.
const MAX_DEPTH: u32 = 32;

/// Appends `term`'s external term format (without the version byte) to
/// `out`, for the terms keys are usually made of: binaries, floats,
/// integers of 32 bits, atoms of Latin-1 names, proper lists (a list of
/// bytes as a STRING_EXT) and tuples of these; byte for byte what
/// `enif_term_to_binary` writes, but for atoms (always in the UTF-8 atom
/// form here, which every OTP release reads). `false` for any other term
/// (`out` is then left half written: see [`write_element`]). No binary is
/// allocated, and no size computed first: the common key costs a third of
/// `enif_term_to_binary`.
fn write_term(term: Term<'_>, out: &mut Vec<u8>, depth: u32) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    // One call tells the type: no failed decode tried on the way.
    match term.get_type() {
        TermType::Binary => write_binary(term, out),
        TermType::Integer => write_integer(term, out),
        TermType::Float => write_float(term, out),
        TermType::List => write_list(term, out, depth),
        TermType::Tuple => write_tuple(term, out, depth),
        TermType::Atom => write_atom(term, out),
        _ => false,
    }
}

/// An atom whose name is Latin-1 (every atom, on OTP 25: the NIF API
/// reads no other), as SMALL_ATOM_UTF8_EXT or ATOM_UTF8_EXT.
fn write_atom(term: Term<'_>, out: &mut Vec<u8>) -> bool {
    // A Latin-1 atom name is at most 255 bytes, and its NUL.
    let mut buf = [0u8; 256];
    // SAFETY: `term` is a live term of its environment; `buf` has room for
    // the size given; the call fails (0) for anything but an atom of a
    // Latin-1 name, else returns the bytes written, its NUL included.
    let written = unsafe {
        enif_get_atom(
            term.get_env().as_c_arg(),
            term.as_c_arg(),
            buf.as_mut_ptr().cast::<c_char>(),
            buf.len() as c_uint,
            ErlNifCharEncoding::ERL_NIF_LATIN1,
        )
    };
    let Some(name) = usize::try_from(written)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|n| buf.get(..n))
    else {
        return false;
    };
    // Latin-1 to UTF-8: a byte past 127 takes two (at most 510 in all).
    let utf8_len = name
        .iter()
        .map(|&b| 1 + usize::from(b >= 0x80))
        .sum::<usize>();
    match u8::try_from(utf8_len) {
        Ok(n) => out.extend_from_slice(&[119, n]), // SMALL_ATOM_UTF8_EXT
        Err(_) => {
            out.push(118); // ATOM_UTF8_EXT
            out.extend_from_slice(&(utf8_len as u16).to_be_bytes());
        }
    }
    for &b in name {
        if b < 0x80 {
            out.push(b);
        } else {
            out.extend_from_slice(&[0xC0 | (b >> 6), 0x80 | (b & 0x3F)]);
        }
    }
    true
}

/// A binary (not a bitstring of a partial byte: that is left to
/// `enif_term_to_binary`).
fn write_binary(term: Term<'_>, out: &mut Vec<u8>) -> bool {
    let Ok(bin) = rustler::Binary::from_term(term) else {
        return false;
    };
    let Ok(len) = u32::try_from(bin.len()) else {
        return false;
    };
    out.push(109); // BINARY_EXT
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bin.as_slice());
    true
}

fn write_integer(term: Term<'_>, out: &mut Vec<u8>) -> bool {
    let mut i: i64 = 0;
    // SAFETY: `term` is a live term of its environment; enif_get_int64
    // only writes `i`, and fails for an integer that does not fit.
    if unsafe { enif_get_int64(term.get_env().as_c_arg(), term.as_c_arg(), &mut i) } == 0 {
        return false;
    }
    if let Ok(b) = u8::try_from(i) {
        out.extend_from_slice(&[97, b]); // SMALL_INTEGER_EXT
    } else if let Ok(w) = i32::try_from(i) {
        out.push(98); // INTEGER_EXT
        out.extend_from_slice(&w.to_be_bytes());
    } else {
        return false; // a bignum there
    }
    true
}

fn write_float(term: Term<'_>, out: &mut Vec<u8>) -> bool {
    let mut x: f64 = 0.0;
    // SAFETY: `term` is a live term of its environment; enif_get_double
    // only writes `x`, and fails for anything but a float.
    if unsafe { enif_get_double(term.get_env().as_c_arg(), term.as_c_arg(), &mut x) } == 0 {
        return false;
    }
    out.push(70); // NEW_FLOAT_EXT
    out.extend_from_slice(&x.to_bits().to_be_bytes());
    true
}

fn write_list(term: Term<'_>, out: &mut Vec<u8>, depth: u32) -> bool {
    let env = term.get_env();
    let at = out.len();
    out.extend_from_slice(&[108, 0, 0, 0, 0]); // LIST_EXT, its length below
    let mut len: u32 = 0;
    // Whether every element is an integer 0..=255 (SMALL_INTEGER_EXT).
    let mut bytes = true;
    let mut cell = term.as_c_arg();
    loop {
        let mut head = MaybeUninit::<ErlNifTerm>::uninit();
        let mut tail = MaybeUninit::<ErlNifTerm>::uninit();
        // SAFETY: `cell` is a live term of `env` (the list or a tail of
        // it); enif_get_list_cell only writes the two out-parameters,
        // and both when it returns non-zero.
        let (head, tail) = unsafe {
            if enif_get_list_cell(env.as_c_arg(), cell, head.as_mut_ptr(), tail.as_mut_ptr()) == 0 {
                break;
            }
            (head.assume_init(), tail.assume_init())
        };
        // SAFETY: the head of a live list of `env`.
        let elem = unsafe { Term::new(env, head) };
        let from = out.len();
        if !write_term(elem, out, depth + 1) {
            return false;
        }
        bytes &= out.len() == from + 2 && out[from] == 97;
        len = len.saturating_add(1);
        cell = tail;
    }
    // SAFETY: as above.
    if unsafe { enif_is_empty_list(env.as_c_arg(), cell) } == 0 {
        return false; // an improper list
    }
    if len == 0 {
        out.truncate(at);
    } else if bytes && len < 65_536 {
        // A list of bytes is a STRING_EXT: its length (u16) and the
        // bytes, no tail.
        let data: Vec<u8> = out[at + 5..].chunks_exact(2).map(|c| c[1]).collect();
        out.truncate(at);
        out.push(107); // STRING_EXT
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&data);
        return true;
    } else if len == u32::MAX {
        return false;
    } else {
        out[at + 1..at + 5].copy_from_slice(&len.to_be_bytes());
    }
    out.push(106); // NIL_EXT
    true
}

fn write_tuple(term: Term<'_>, out: &mut Vec<u8>, depth: u32) -> bool {
    let Some((n, elems)) = tuple_elems(term) else {
        return false;
    };
    match u8::try_from(n) {
        Ok(a) => out.extend_from_slice(&[104, a]), // SMALL_TUPLE_EXT
        Err(_) => {
            out.push(105); // LARGE_TUPLE_EXT
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    for i in 0..n {
        // SAFETY: i < arity, and the tuple's elements live as long as it.
        let elem = unsafe { Term::new(term.get_env(), *elems.add(i)) };
        if !write_term(elem, out, depth + 1) {
            return false;
        }
    }
    true
}

/// Appends `term`'s external term format (without the version byte) to
/// `out`: by [`write_term`] when it can, else by `enif_term_to_binary`.
fn write_element(term: Term<'_>, out: &mut Vec<u8>) -> NifResult<()> {
    let at = out.len();
    if !write_term(term, out, 1) {
        out.truncate(at);
        out.extend_from_slice(encode(term)?.get(1..).unwrap_or_default());
    }
    Ok(())
}

/// The key of `gk`, which must be a `{group, key}` tuple, its hash, and
/// where its group's encoding ends (the group is
/// `key[PAIR_HEADER.len()..end]`, see [`group_bytes`]).
pub fn key(gk: Term<'_>) -> NifResult<(Key, u64, usize)> {
    let Some((2, elems)) = tuple_elems(gk) else {
        return Err(Error::BadArg);
    };
    // SAFETY: a 2-tuple's two elements, which live as long as it.
    let (group, key) = unsafe {
        (
            Term::new(gk.get_env(), *elems),
            Term::new(gk.get_env(), *elems.add(1)),
        )
    };
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&PAIR_HEADER);
    write_element(group, &mut out)?;
    let group_end = out.len();
    write_element(key, &mut out)?;
    let hash = HASHER.hash_one(&out[..]);
    Ok((out, hash, group_end))
}

/// The group's encoding in a key [`key`] wrote, its group ending at `end`.
pub fn group_bytes(key: &[u8], end: usize) -> &[u8] {
    key.get(PAIR_HEADER.len()..end).unwrap_or_default()
}

/// The group of a key [`key`] wrote, as a term of `env` (the key's other
/// element is not decoded).
pub fn group_term<'a>(env: Env<'a>, key: &[u8]) -> Option<Term<'a>> {
    // The group's encoding starts after the pair's header; what follows it
    // (the key) is left unread.
    let mut group = Vec::with_capacity(key.len().saturating_sub(PAIR_HEADER.len() - 1));
    group.push(PAIR_HEADER[0]);
    group.extend_from_slice(key.get(PAIR_HEADER.len()..)?);
    env.binary_to_term(&group).map(|(term, _)| term)
}

/// `group`'s encoding, as [`group_bytes`] finds it in its keys.
pub fn group_encoding(group: Term<'_>) -> NifResult<Vec<u8>> {
    let mut out = Vec::with_capacity(32);
    write_element(group, &mut out)?;
    Ok(out)
}

/// The bytes every key of `group` starts with: the version byte, a
/// 2-tuple's header (SMALL_TUPLE_EXT, arity 2) and the group's encoding.
pub fn group_prefix(group: Term<'_>) -> NifResult<Vec<u8>> {
    let mut prefix = PAIR_HEADER.to_vec();
    write_element(group, &mut prefix)?;
    Ok(prefix)
}
