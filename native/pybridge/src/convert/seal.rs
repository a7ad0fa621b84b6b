//! Seals on the BEAM terms Python holds (`erlang.Pid`, `erlang.Ref`).
//!
//! Python code can build any object, including an `erlang.Pid` holding bytes
//! of its choosing (through `object.__new__` and the class's slots). What it
//! cannot do is seal one: a seal is a keyed hash (SipHash-2-4) of the term,
//! under a key drawn at random when the library loads and never shown to
//! Python. The bridge seals every pid and reference it hands to Python and
//! only takes back those whose seal matches, so a term that reaches the BEAM
//! from Python is one the BEAM sent there: Python can neither forge a pid
//! nor have the bridge decode bytes it made up.
//!
//! (Python with `ctypes` can read and write the whole process's memory; no
//! check inside the process stands against that.)

use std::hash::BuildHasher;
use std::sync::OnceLock;

/// What is sealed: the kind of term goes into the hash, so the seal of a pid
/// does not pass for a reference with the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    Pid = 1,
    Ref = 2,
}

/// The seal of the term `etf` (external term format) of kind `kind`.
pub fn seal(kind: Sealed, etf: &[u8]) -> u64 {
    let (k0, k1) = key();
    let mut message = Vec::with_capacity(etf.len() + 1);
    message.push(kind as u8);
    message.extend_from_slice(etf);
    siphash24(k0, k1, &message)
}

/// True when `seal` is the seal of `etf` as a term of kind `kind`.
pub fn verify(kind: Sealed, etf: &[u8], seal_value: u64) -> bool {
    seal(kind, etf) == seal_value
}

/// The key of this OS process, drawn once from the OS's random source
/// (through the standard library's randomly keyed hasher).
fn key() -> (u64, u64) {
    static KEY: OnceLock<(u64, u64)> = OnceLock::new();
    *KEY.get_or_init(|| {
        let random = std::collections::hash_map::RandomState::new();
        (
            random.hash_one(("pybridge seal", 0u8)),
            random.hash_one(("pybridge seal", 1u8)),
        )
    })
}

/// SipHash-2-4 (Aumasson and Bernstein, 2012) of `message` under the key
/// `(k0, k1)`.
fn siphash24(k0: u64, k1: u64, message: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = message.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = u64::from_le_bytes(word);
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    let b = u64::from_le_bytes(last) | ((message.len() as u64) << 56);
    v[3] ^= b;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference key of the SipHash paper: bytes 00 01 .. 0f.
    const K0: u64 = 0x0706_0504_0302_0100;
    const K1: u64 = 0x0f0e_0d0c_0b0a_0908;

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // From the SipHash paper (appendix A) and its reference
        // implementation's vectors: messages 00 01 .. (n-1).
        let message: Vec<u8> = (0u8..64).collect();
        assert_eq!(siphash24(K0, K1, &message[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(K0, K1, &message[..15]), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash24(K0, K1, &message[..8]), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn a_seal_fits_one_term_of_one_kind() {
        let pid = [131u8, 88, 100, 0, 1, b'a', 0, 0, 0, 9];
        let sealed = seal(Sealed::Pid, &pid);
        assert!(verify(Sealed::Pid, &pid, sealed));
        assert!(
            !verify(Sealed::Ref, &pid, sealed),
            "a pid's seal is no ref's"
        );
        let mut other = pid;
        other[9] = 10;
        assert!(!verify(Sealed::Pid, &other, sealed), "nor another pid's");
        assert!(!verify(Sealed::Pid, &pid, sealed ^ 1));
    }
}
