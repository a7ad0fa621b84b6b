//! The external term format (what `term_to_binary` gives) of integers and
//! atoms, for the values the NIF API cannot read or make directly: integers
//! beyond 64 bits and atoms beyond Latin-1. Pure byte code, so `cargo test`
//! covers it without a BEAM; `nif/term` hands it `term_to_binary` output and
//! gives what it makes to `binary_to_term`.
//!
//! The bigint codec is ours rather than the one rustler's `big_integer`
//! feature provides (the crate does not enable it): rustler 0.39 implements
//! it for num-bigint 0.5, while PyO3 converts Python ints to and from
//! num-bigint 0.4 (the feature only compiled a second num-bigint); its
//! encoder gives `{:error, :big_int_encoder_invalid_bytes}` *as the value*
//! when the BEAM refuses an integer, which a caller cannot tell from a real
//! tuple, where `nif/term/encode.rs` answers `:integer_too_large`; and the
//! atom reader below needs this module anyway.

use num_bigint::{BigInt, Sign};

const ETF_VERSION: u8 = 131;
const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const SMALL_BIG_EXT: u8 = 110;
const LARGE_BIG_EXT: u8 = 111;
const ATOM_UTF8_EXT: u8 = 118;
const SMALL_ATOM_UTF8_EXT: u8 = 119;

/// An integer in the external term format (what `term_to_binary` gives).
pub fn parse_etf_integer(etf: &[u8]) -> Option<BigInt> {
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
pub fn etf_big_integer(b: &BigInt) -> Option<Vec<u8>> {
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
pub fn parse_etf_atom(etf: &[u8]) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_ATOM_CHARS;

    fn big(text: &str) -> BigInt {
        text.parse().expect("a decimal integer")
    }

    /// (value, `term_to_binary(value)` as OTP 25 prints it).
    fn integers() -> Vec<(BigInt, Vec<u8>)> {
        vec![
            (big("0"), vec![131, 97, 0]),
            (big("255"), vec![131, 97, 255]),
            (big("256"), vec![131, 98, 0, 0, 1, 0]),
            (big("-1"), vec![131, 98, 255, 255, 255, 255]),
            (big("2147483647"), vec![131, 98, 127, 255, 255, 255]),
            (big("-2147483648"), vec![131, 98, 128, 0, 0, 0]),
            (big("2147483648"), vec![131, 110, 4, 0, 0, 0, 0, 128]),
            (big("-2147483649"), vec![131, 110, 4, 1, 1, 0, 0, 128]),
            // i64::MAX, i64::MAX + 1, i64::MIN, i64::MIN - 1
            (
                big("9223372036854775807"),
                vec![131, 110, 8, 0, 255, 255, 255, 255, 255, 255, 255, 127],
            ),
            (
                big("9223372036854775808"),
                vec![131, 110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 128],
            ),
            (
                big("-9223372036854775808"),
                vec![131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128],
            ),
            (
                big("-9223372036854775809"),
                vec![131, 110, 8, 1, 1, 0, 0, 0, 0, 0, 0, 128],
            ),
            // ±2^64: nine digit bytes
            (
                big("18446744073709551616"),
                vec![131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            (
                big("-18446744073709551616"),
                vec![131, 110, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
        ]
    }

    #[test]
    fn integers_of_every_encoding_and_both_signs_are_read() {
        for (value, etf) in integers() {
            assert_eq!(parse_etf_integer(&etf), Some(value.clone()), "{value}");
        }
    }

    #[test]
    fn integers_beyond_64_bits_are_written_as_the_beam_writes_them() {
        for (value, etf) in integers() {
            if i64::try_from(&value).is_err() {
                assert_eq!(etf_big_integer(&value), Some(etf), "{value}");
            }
        }
    }

    #[test]
    fn integers_of_256_digit_bytes_and_more_take_the_large_form() {
        // 2^2040 has 256 digit bytes: LARGE_BIG_EXT with a 4-byte count.
        let value: BigInt = BigInt::from(1) << 2040u32;
        let etf = etf_big_integer(&value).expect("encodable");
        assert_eq!(etf[..7], [131, 111, 0, 0, 1, 0, 0]);
        assert_eq!(etf.len(), 263);
        assert_eq!(parse_etf_integer(&etf), Some(value));
        // -2^2039 has 255: still SMALL_BIG_EXT.
        let value: BigInt = -(BigInt::from(1) << 2039u32);
        let etf = etf_big_integer(&value).expect("encodable");
        assert_eq!(etf[..4], [131, 110, 255, 1]);
        assert_eq!(etf.len(), 259);
        assert_eq!(parse_etf_integer(&etf), Some(value));
    }

    #[test]
    fn every_integer_written_reads_back() {
        let one = BigInt::from(1);
        for bits in [63u32, 64, 65, 127, 128, 1000, 100_000] {
            for value in [
                (&one << bits) - 1u8,
                &one << bits,
                -(&one << bits),
                -(&one << bits) - 1u8,
            ] {
                let etf = etf_big_integer(&value).expect("encodable");
                assert_eq!(parse_etf_integer(&etf), Some(value.clone()), "2^{bits}");
            }
        }
    }

    #[test]
    fn malformed_integers_are_refused() {
        for etf in [
            &[][..],
            &[131],
            &[130, 97, 1],           // not version 131
            &[131, 100, 0, 1, 97],   // an atom, not an integer
            &[131, 98, 0, 0],        // INTEGER_EXT cut short
            &[131, 110, 4, 0, 1, 2], // fewer digit bytes than announced
            &[131, 111, 0, 0, 0],    // LARGE_BIG_EXT cut in its count
        ] {
            assert_eq!(parse_etf_integer(etf), None, "{etf:?}");
        }
    }

    /// `term_to_binary` of an atom of `chars` characters, in UTF-8.
    fn atom_etf(name: &str) -> Vec<u8> {
        let mut etf = vec![131];
        match u8::try_from(name.len()) {
            Ok(n) => etf.extend([SMALL_ATOM_UTF8_EXT, n]),
            Err(_) => {
                etf.push(ATOM_UTF8_EXT);
                etf.extend(u16::try_from(name.len()).expect("short").to_be_bytes());
            }
        }
        etf.extend(name.as_bytes());
        etf
    }

    #[test]
    fn atoms_at_the_length_limit_are_read() {
        // 255 four-byte characters: 1,020 bytes, ATOM_UTF8_EXT (the BEAM
        // writes it as [131, 118, 3, 252, ...]).
        let longest = "😀".repeat(MAX_ATOM_CHARS);
        let etf = atom_etf(&longest);
        assert_eq!(etf[..4], [131, 118, 3, 252]);
        assert_eq!(parse_etf_atom(&etf), Some(longest));
        // 63 of them fit the one-byte length of SMALL_ATOM_UTF8_EXT.
        let short = "😀".repeat(63);
        let etf = atom_etf(&short);
        assert_eq!(etf[..3], [131, 119, 252]);
        assert_eq!(parse_etf_atom(&etf), Some(short));
    }

    #[test]
    fn malformed_atoms_are_refused() {
        let mut cut = atom_etf("λx");
        cut.pop();
        for etf in [
            &[][..],
            &[131, 119],
            &cut[..],                // shorter than its length says
            &[131, 119, 1, 0xff],    // not UTF-8
            &[131, 100, 0, 1, b'a'], // Latin-1 ATOM_EXT: read with atom_to_string
        ] {
            assert_eq!(parse_etf_atom(etf), None, "{etf:?}");
        }
    }
}
