//! A Redis dict's counters for `stats`: the scripts keep them in the dict's
//! `st` hash as they announce events (see [`super::scripts`]), for every
//! node at once. A handle reports what was counted since it opened (the
//! counters as it found them are its baseline), as the in-process stores
//! count from their start, and no node reads the event stream to count.

use std::collections::HashMap;

use super::Shared;
use crate::limits::RECENT_EXPIRIES;
use crate::shared_dict::backend::SharedCounts;
use crate::shared_dict::DictError;

/// The dict's counters as Redis has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Counts {
    puts: u64,
    deletes: u64,
    expired: u64,
    /// The latest expiries: (their number among all expiries, key, Redis
    /// wall-clock ms), newest first.
    recent: Vec<(u64, String, u64)>,
}

impl Counts {
    /// Reads the dict's counters (one `HGETALL`).
    pub(super) fn read(shared: &Shared) -> Result<Counts, DictError> {
        let st = &shared.keys.st;
        let fields: HashMap<String, String> = shared
            .pool
            .run_idempotent(|c| redis::cmd("HGETALL").arg(st).query(c))?;
        Ok(Counts::parse(&fields))
    }

    fn parse(fields: &HashMap<String, String>) -> Counts {
        let n = |f: &str| fields.get(f).and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut recent: Vec<(u64, String, u64)> = fields
            .iter()
            .filter(|(f, _)| f.starts_with('r'))
            .filter_map(|(_, v)| {
                // `seq:ms:key` (the key may hold colons itself).
                let mut parts = v.splitn(3, ':');
                let seq = parts.next()?.parse().ok()?;
                let ms = parts.next()?.parse().ok()?;
                Some((seq, parts.next()?.to_owned(), ms))
            })
            .collect();
        recent.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
        recent.truncate(RECENT_EXPIRIES);
        Counts {
            puts: n("p"),
            deletes: n("d"),
            expired: n("e"),
            recent,
        }
    }

    /// What was counted since `base` (read when the handle opened).
    pub(super) fn since(self, base: &Counts) -> SharedCounts {
        SharedCounts {
            puts: self.puts.saturating_sub(base.puts),
            deletes: self.deletes.saturating_sub(base.deletes),
            expired_total: self.expired.saturating_sub(base.expired),
            recent_expiries: self
                .recent
                .into_iter()
                .filter(|(seq, _, _)| *seq > base.expired)
                .map(|(_, key, ms)| (key, ms))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn counts_since_the_baseline_newest_expiry_first() {
        let base = Counts::parse(&fields(&[("p", "5"), ("e", "2"), ("r2", "2:100:old")]));
        let now = Counts::parse(&fields(&[
            ("p", "9"),
            ("d", "1"),
            ("e", "4"),
            ("r2", "2:100:old"),
            ("r3", "3:200:a:b"),
            ("r4", "4:300:c"),
        ]));
        let got = now.since(&base);
        assert_eq!((got.puts, got.deletes, got.expired_total), (4, 1, 2));
        assert_eq!(
            got.recent_expiries,
            vec![("c".to_owned(), 300), ("a:b".to_owned(), 200)]
        );
    }

    #[test]
    fn a_missing_hash_counts_nothing() {
        let got = Counts::parse(&HashMap::new()).since(&Counts::default());
        assert_eq!(got, SharedCounts::default());
    }
}
