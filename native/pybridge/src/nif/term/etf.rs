//! The external term format (what `term_to_binary` gives) of integers and
//! atoms, for the values the NIF API cannot read or make directly: integers
//! beyond 64 bits and atoms beyond Latin-1.

use num_bigint::{BigInt, Sign};

const ETF_VERSION: u8 = 131;
const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const SMALL_BIG_EXT: u8 = 110;
const LARGE_BIG_EXT: u8 = 111;
const ATOM_UTF8_EXT: u8 = 118;
const SMALL_ATOM_UTF8_EXT: u8 = 119;

/// An integer in the external term format (what `term_to_binary` gives).
pub(super) fn parse_etf_integer(etf: &[u8]) -> Option<BigInt> {
    let (&version, rest) = etf.split_first()?;
    if version != ETF_VERSION {
        return None;
    }
    let (&tag, rest) = rest.split_first()?;
    match tag {
        SMALL_INTEGER_EXT => rest.first().map(|&b| BigInt::from(b)),
        INTEGER_EXT => {
            let b: [u8; 4] = rest.get(..4)?.try_into().ok()?;
            Some(BigInt::from(i32::from_be_bytes(b)))
        }
        SMALL_BIG_EXT | LARGE_BIG_EXT => {
            let (n, rest) = if tag == SMALL_BIG_EXT {
                let (&n, rest) = rest.split_first()?;
                (usize::from(n), rest)
            } else {
                let b: [u8; 4] = rest.get(..4)?.try_into().ok()?;
                (usize::try_from(u32::from_be_bytes(b)).ok()?, &rest[4..])
            };
            let (&sign, digits) = rest.split_first()?;
            let digits = digits.get(..n)?;
            let sign = if sign == 0 { Sign::Plus } else { Sign::Minus };
            Some(BigInt::from_bytes_le(sign, digits))
        }
        _ => None,
    }
}

/// An integer outside the `i64` range in the external term format.
pub(super) fn etf_big_integer(b: &BigInt) -> Option<Vec<u8>> {
    let (sign, digits) = b.to_bytes_le();
    let n = u32::try_from(digits.len()).ok()?;
    let mut out = Vec::with_capacity(digits.len() + 7);
    out.push(ETF_VERSION);
    match u8::try_from(n) {
        Ok(small) => {
            out.push(SMALL_BIG_EXT);
            out.push(small);
        }
        Err(_) => {
            out.push(LARGE_BIG_EXT);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.push(u8::from(sign == Sign::Minus));
    out.extend_from_slice(&digits);
    Some(out)
}

/// The name of an atom in the external term format (UTF-8 encodings only;
/// Latin-1 atoms are read with `atom_to_string`).
pub(super) fn parse_etf_atom(etf: &[u8]) -> Option<String> {
    let (&version, rest) = etf.split_first()?;
    if version != ETF_VERSION {
        return None;
    }
    let (&tag, rest) = rest.split_first()?;
    let (len, rest) = match tag {
        ATOM_UTF8_EXT => {
            let b: [u8; 2] = rest.get(..2)?.try_into().ok()?;
            (usize::from(u16::from_be_bytes(b)), &rest[2..])
        }
        SMALL_ATOM_UTF8_EXT => {
            let (&n, rest) = rest.split_first()?;
            (usize::from(n), rest)
        }
        _ => return None,
    };
    String::from_utf8(rest.get(..len)?.to_vec()).ok()
}
