//! What a backend reports an operation did ([`Events`]): each event
//! ([`RawEvent`]) names its key ([`EventKey`], short keys inline) and
//! carries the value written or removed when the backend has it at hand.

use std::sync::Arc;

use super::{Found, Item};
use crate::shared_dict::EventKind;

/// The key of an event: a short key (most) is kept inline, so raising an
/// event for it allocates nothing; a longer one is shared.
#[derive(Clone)]
pub enum EventKey {
    Inline {
        len: u8,
        bytes: [u8; EventKey::INLINE],
    },
    Shared(Arc<str>),
}

impl EventKey {
    /// Longest key kept inline.
    pub const INLINE: usize = 22;
}

impl From<&str> for EventKey {
    fn from(key: &str) -> EventKey {
        if key.len() > EventKey::INLINE {
            return EventKey::Shared(Arc::from(key));
        }
        let mut bytes = [0; EventKey::INLINE];
        bytes[..key.len()].copy_from_slice(key.as_bytes());
        EventKey::Inline {
            len: key.len() as u8,
            bytes,
        }
    }
}

impl From<Arc<str>> for EventKey {
    fn from(key: Arc<str>) -> EventKey {
        EventKey::Shared(key)
    }
}

impl std::ops::Deref for EventKey {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            EventKey::Inline { len, bytes } => {
                let bytes = &bytes[..*len as usize];
                // SAFETY: the bytes were copied from a `&str`, whole.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            EventKey::Shared(key) => key,
        }
    }
}

impl std::fmt::Debug for EventKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// What happened to which key, as the backend saw it; the front raises it.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub kind: EventKind,
    pub key: EventKey,
    /// The value written (`Put`) or removed (`Delete`, `Expire`), for
    /// listeners that pass it on (Python callbacks); `None` when the
    /// backend does not have it at hand. A scalar stays by value: it is
    /// made into an [`Item`] only for a listener that is there.
    pub value: Option<Found>,
}

impl RawEvent {
    #[inline]
    pub fn new(kind: EventKind, key: impl Into<EventKey>, value: Option<Item>) -> RawEvent {
        Self::found(kind, key, value.map(Found::Shared))
    }

    /// An event with the value as a read would return it.
    #[inline]
    pub fn found(kind: EventKind, key: impl Into<EventKey>, value: Option<Found>) -> RawEvent {
        RawEvent {
            kind,
            key: key.into(),
            value,
        }
    }
}

/// What a backend reports an operation did: its events in order, for the
/// front to raise. A write reports its `Put` through [`Events::put`]:
/// while nothing hears of the dict's writes (no subscriber, no Python
/// callback, no telemetry) the front asks for writes to be only counted,
/// so that the common put copies no key and shares no value. Derefs to the
/// list for every other event.
#[derive(Debug)]
pub struct Events {
    list: Vec<RawEvent>,
    /// Writes are counted, not listed (see above).
    counting: bool,
    /// Writes counted.
    counted: u64,
    /// Whether anything on this node hears of the operation's events (see
    /// [`Events::heard`]).
    heard: bool,
}

impl Events {
    /// Every event listed, in `list` (empty; a buffer to reuse).
    pub fn listing(list: Vec<RawEvent>) -> Events {
        Events {
            list,
            counting: false,
            counted: 0,
            heard: true,
        }
    }

    /// Writes only counted; other events listed.
    pub fn counting() -> Events {
        Events {
            list: Vec::new(),
            counting: true,
            counted: 0,
            heard: false,
        }
    }

    /// Whether anything on this node heard of the dict's writes when the
    /// operation began (a listener that wants events, or telemetry), as
    /// the front read it: a backend whose events come back later (Redis)
    /// makes the writer wait for them only then. `true` unless the front
    /// said otherwise ([`Events::counting`], [`Events::unheard`]).
    #[inline]
    pub fn heard(&self) -> bool {
        self.heard
    }

    /// Marks the operation as one nothing on this node hears of.
    #[inline]
    pub fn unheard(&mut self) {
        self.heard = false;
    }

    /// Reports a write of `key`; `value` (the value written, as a read
    /// would return it) is asked for only when the write is listed.
    #[inline]
    pub fn put(&mut self, key: &str, value: impl FnOnce() -> Found) {
        if self.counting {
            self.counted += 1;
        } else {
            self.list
                .push(RawEvent::found(EventKind::Put, key, Some(value())));
        }
    }

    /// Writes counted and not listed.
    pub fn counted(&self) -> u64 {
        self.counted
    }

    /// Takes the writes counted so far: a backend that keeps its own count
    /// ([`Backend::counted_puts`](super::Backend::counted_puts)) adds them
    /// to it, and the front then counts none of them.
    #[inline]
    pub fn take_counted(&mut self) -> u64 {
        std::mem::take(&mut self.counted)
    }

    /// The list (to reuse its buffer).
    pub fn into_list(self) -> Vec<RawEvent> {
        self.list
    }
}

impl Default for Events {
    /// Every event listed, heard.
    fn default() -> Events {
        Events::listing(Vec::new())
    }
}

impl std::ops::Deref for Events {
    type Target = Vec<RawEvent>;
    fn deref(&self) -> &Vec<RawEvent> {
        &self.list
    }
}

impl std::ops::DerefMut for Events {
    fn deref_mut(&mut self) -> &mut Vec<RawEvent> {
        &mut self.list
    }
}
