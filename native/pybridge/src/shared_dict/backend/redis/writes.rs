//! The writes that go through the [`batch`](super::batch)er: a put (its
//! batched form and its answer) and a removal (its record, read back from
//! its parking key when too big for the batch's reply, see [`big`]).

use super::{batch, big, parse_record, Redis};
use crate::shared_dict::backend::{Condition, Expiry, Item};
use crate::shared_dict::codec;
use crate::shared_dict::Now;
use crate::shared_dict::{DictError, Stored};

impl Redis {
    /// Writes `key` under `cond` (alone or in a batch); its new version,
    /// once this node raised its event when something here `heard` of the
    /// dict's writes (see [`Shared::written`](super::Shared::written)).
    pub(super) fn put_record(
        &self,
        key: &str,
        item: &Stored,
        expiry: Expiry,
        cond: Condition,
        now: &Now,
        heard: bool,
    ) -> Result<u64, DictError> {
        let op = put_op(key, item, expiry, cond, now, heard)?;
        let (out, id) = self.batch.write(&self.shared, op)?;
        self.shared.written(&id, heard);
        put_answer(out)
    }

    /// Removes `key`; its record when it was there (as
    /// [`put_record`](Self::put_record) for its event).
    pub(super) fn remove_record(&self, key: &str, heard: bool) -> Result<Option<Item>, DictError> {
        // A big record is parked under a key of its own rather than sent
        // back by the script (see [`big`]).
        let park = self.shared.keys.park(self.shared.node);
        let op = batch::Op::Remove {
            key: key.to_owned(),
            park: park.clone(),
            quiet: !heard,
        };
        let (rec, id) = self.batch.write(&self.shared, op)?;
        let rec = match rec {
            redis::Value::BulkString(rec) => Some(rec),
            redis::Value::Int(len) => Some(big::take_parked(
                &self.shared.pool,
                &park,
                len.max(0) as usize,
            )?),
            _ => None,
        };
        self.shared.written(&id, heard);
        match rec {
            Some(rec) => Ok(Some(parse_record(&rec)?.0)),
            None => Ok(None),
        }
    }
}

/// The batched write of a put (`heard`: see
/// [`Shared::written`](super::Shared::written)). `now` is read only for an
/// `At` expiry (sent as the time left).
pub(super) fn put_op(
    key: &str,
    item: &Stored,
    expiry: Expiry,
    cond: Condition,
    now: &Now,
    heard: bool,
) -> Result<batch::Op, DictError> {
    let body = codec::encode(item).map_err(|e| DictError::Unstorable(e.to_string()))?;
    let mode = match expiry {
        Expiry::Keep => "keep".to_owned(),
        Expiry::Never => "never".to_owned(),
        Expiry::At(at) => at.saturating_sub(now.get()).to_string(),
    };
    let (cond, expected) = match cond {
        Condition::Always => ("always", String::new()),
        Condition::Absent => ("absent", String::new()),
        Condition::Version(None) => ("ver", String::new()),
        Condition::Version(Some(v)) => ("ver", format!("{v:020}")),
    };
    Ok(batch::Op::Put {
        key: key.to_owned(),
        body,
        mode,
        cond,
        expected,
        quiet: !heard,
    })
}

/// A put's answer in its batch: the new version, or why not.
pub(super) fn put_answer(out: redis::Value) -> Result<u64, DictError> {
    match out {
        redis::Value::Int(-1) => Err(DictError::Exists),
        redis::Value::Int(-2) => Err(DictError::Conflict),
        redis::Value::Int(v) if v > 0 => Ok(v as u64),
        _ => Err(DictError::Backend(
            "redis: unexpected reply to a put".into(),
        )),
    }
}
