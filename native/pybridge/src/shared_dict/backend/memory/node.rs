//! One entry of the memory store: a single allocation holding its version,
//! its value (small scalars inline), the links that place it in its
//! shard's expiry and LRU lists when it has them, and its key's bytes.
//!
//! ```text
//! Head (32 B)   version: u64, value: Held (16 B), key_len: u32, flags: u8
//! [Timer 16 B]  at, index            only once the entry had a TTL (TIMER)
//! [Links 16 B]  prev, next           only in a store with LRU eviction (LRU)
//! key bytes
//! ```
//!
//! An entry without TTL and LRU, with a key of up to 8 bytes and an integer
//! value, is one 48-byte malloc chunk. The shard's hash table owns each node
//! (a [`NodeRef`], one pointer wide); the expiry index and the LRU list
//! only refer to nodes that are in the table. Every access happens under the shard's
//! mutex, which is what makes the raw pointers sound.

use std::alloc::{self, Layout};
use std::mem::{align_of, size_of};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::super::{Found, Item, Millis, Scalar};
use crate::convert::Value;
use crate::shared_dict::clock::Now;
use crate::shared_dict::Stored;

/// The node has a [`Timer`] section.
pub(super) const TIMER: u8 = 1;
/// The timer is in its shard's expiry list (the entry expires).
pub(super) const ARMED: u8 = 2;
/// The node has an LRU [`Links`] section.
pub(super) const LRU: u8 = 4;

/// A value as an entry keeps it: plain scalars inline (a read makes the
/// shared [`Item`] anew), anything else as the shared item itself.
#[derive(Debug)]
pub(super) enum Held {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Shared(Item),
}

impl Held {
    /// Keeps `value`: inline when it is a plain scalar.
    #[inline]
    pub(super) fn of(value: Found) -> Held {
        match value {
            // A scalar owns nothing: copied out, nothing to drop.
            Found::Scalar(s) => match &*s {
                Stored::Plain(Value::None) => Held::None,
                Stored::Plain(Value::Bool(b)) => Held::Bool(*b),
                Stored::Plain(Value::Int(i)) => Held::Int(*i),
                Stored::Plain(Value::Float(f)) => Held::Float(*f),
                // Not made (a scalar is one of the above); kept total.
                _ => Held::Shared(Found::Scalar(s).into_item()),
            },
            Found::Shared(item) => match &*item {
                Stored::Plain(Value::None) => Held::None,
                Stored::Plain(Value::Bool(b)) => Held::Bool(*b),
                Stored::Plain(Value::Int(i)) => Held::Int(*i),
                Stored::Plain(Value::Float(f)) => Held::Float(*f),
                _ => Held::Shared(item),
            },
        }
    }

    /// A copy as cheap as the value allows (a pointer for a shared one), to
    /// be turned into an [`Item`] outside the lock.
    pub(super) fn share(&self) -> Held {
        match self {
            Held::None => Held::None,
            Held::Bool(b) => Held::Bool(*b),
            Held::Int(i) => Held::Int(*i),
            Held::Float(f) => Held::Float(*f),
            Held::Shared(item) => Held::Shared(item.clone()),
        }
    }

    /// The value as a shared item.
    pub(super) fn into_item(self) -> Item {
        match self {
            Held::Shared(item) => item,
            Held::None => Arc::new(Stored::Plain(Value::None)),
            Held::Bool(b) => Arc::new(Stored::Plain(Value::Bool(b))),
            Held::Int(i) => Arc::new(Stored::Plain(Value::Int(i))),
            Held::Float(f) => Arc::new(Stored::Plain(Value::Float(f))),
        }
    }

    /// The value as a read returns it: an inline scalar by value.
    #[inline]
    pub(super) fn into_found(self) -> Found {
        Found::Scalar(match self {
            Held::Shared(item) => return Found::Shared(item),
            Held::None => Scalar::none(),
            Held::Bool(b) => Scalar::bool(b),
            Held::Int(i) => Scalar::int(i),
            Held::Float(f) => Scalar::float(f),
        })
    }

    /// Calls `f` with the value as a [`Stored`] (an inline one is built on
    /// the stack, without allocating).
    pub(super) fn with_stored<T>(&self, f: impl FnOnce(&Stored) -> T) -> T {
        let scalar = match self {
            Held::Shared(item) => return f(item),
            Held::None => Value::None,
            Held::Bool(b) => Value::Bool(*b),
            Held::Int(i) => Value::Int(*i),
            Held::Float(f) => Value::Float(*f),
        };
        f(&Stored::Plain(scalar))
    }
}

#[repr(C)]
struct Head {
    version: u64,
    value: Held,
    key_len: u32,
    flags: u8,
}

/// The place of a node in a doubly linked list.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct Links {
    pub prev: Option<NodeRef>,
    pub next: Option<NodeRef>,
}

#[repr(C)]
struct Timer {
    at: Millis,
    /// Where the node is in its millisecond's list of the expiry index.
    index: u32,
}

const TIMER_OFFSET: usize = size_of::<Head>();

// The layout the memory figures rely on.
const _: () = assert!(size_of::<Head>() == 32);
const _: () = assert!(size_of::<Timer>() == 16 && size_of::<Links>() == 16);

/// A node, by address. The shard's table holds the owning one; lists hold
/// copies of nodes that are in the table.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct NodeRef(NonNull<Head>);

// SAFETY: a node is only reached through the shard that owns it, and every
// access to a shard happens under its mutex; what a node holds (an `Arc` of
// a `Stored`, plain numbers) is `Send` and `Sync` itself.
unsafe impl Send for NodeRef {}
// SAFETY: as above: shared access is serialised by the shard's mutex.
unsafe impl Sync for NodeRef {}

fn lru_offset(flags: u8) -> usize {
    TIMER_OFFSET
        + if flags & TIMER != 0 {
            size_of::<Timer>()
        } else {
            0
        }
}

fn key_offset(flags: u8) -> usize {
    lru_offset(flags)
        + if flags & LRU != 0 {
            size_of::<Links>()
        } else {
            0
        }
}

fn layout(flags: u8, key_len: usize) -> Layout {
    // Sizes are multiples of 8 up to the key, and a key's length fits in a
    // u32 (checked in `NodeRef::new`), so this cannot overflow.
    match Layout::from_size_align(key_offset(flags) + key_len, align_of::<Head>()) {
        Ok(layout) => layout,
        Err(_) => unreachable!("a node's size is bounded by a u32 key length"),
    }
}

fn allocate(layout: Layout) -> NonNull<Head> {
    // SAFETY: the layout is never zero-sized (it includes the head).
    let raw = unsafe { alloc::alloc(layout) };
    match NonNull::new(raw.cast::<Head>()) {
        Some(p) => p,
        None => alloc::handle_alloc_error(layout),
    }
}

impl NodeRef {
    /// A new node (not in any list); `None` when the key is longer than a
    /// node can hold (4 GiB).
    pub(super) fn new(key: &str, value: Held, version: u64, flags: u8) -> Option<NodeRef> {
        let key_len = u32::try_from(key.len()).ok()?;
        let flags = flags & (TIMER | LRU);
        let p = allocate(layout(flags, key.len()));
        // SAFETY: `p` is a fresh allocation of `layout(flags, key.len())`
        // bytes, aligned for `Head`: the head, the sections `flags` asks for
        // and the key all fit, and nothing else refers to it yet.
        unsafe {
            p.as_ptr().write(Head {
                version,
                value,
                key_len,
                flags,
            });
            let node = NodeRef(p);
            if flags & TIMER != 0 {
                node.timer_ptr().write(Timer { at: 0, index: 0 });
            }
            if flags & LRU != 0 {
                node.lru_ptr().write(Links::default());
            }
            ptr::copy_nonoverlapping(key.as_ptr(), node.key_ptr(), key.len());
            Some(node)
        }
    }

    fn base(self) -> *mut u8 {
        self.0.as_ptr().cast::<u8>()
    }

    fn head(&self) -> &Head {
        // SAFETY: a `NodeRef` in use points to a live node (the shard frees
        // a node only after taking it out of its table and lists), and no
        // `&mut` to its head is alive while the shard's methods read it.
        unsafe { self.0.as_ref() }
    }

    fn head_mut(&mut self) -> &mut Head {
        // SAFETY: as in `head`; the shard holds its lock exclusively and
        // keeps no other reference to this head meanwhile.
        unsafe { self.0.as_mut() }
    }

    fn flags(&self) -> u8 {
        self.head().flags
    }

    /// # Safety
    /// The node must have a timer section.
    unsafe fn timer_ptr(self) -> *mut Timer {
        // SAFETY: the caller says the section exists, right after the head.
        unsafe { self.base().add(TIMER_OFFSET).cast::<Timer>() }
    }

    /// # Safety
    /// The node must have an LRU section.
    unsafe fn lru_ptr(self) -> *mut Links {
        // SAFETY: the caller says the section exists, at its offset.
        unsafe { self.base().add(lru_offset(self.flags())).cast::<Links>() }
    }

    fn key_ptr(self) -> *mut u8 {
        // SAFETY: the key's bytes are the tail of the node's allocation.
        unsafe { self.base().add(key_offset(self.flags())) }
    }

    pub(super) fn key(&self) -> &str {
        let len = self.head().key_len as usize;
        // SAFETY: the node's tail holds `len` bytes copied from a `&str`
        // when it was made, never changed since.
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(self.key_ptr(), len)) }
    }

    pub(super) fn version(&self) -> u64 {
        self.head().version
    }

    pub(super) fn value(&self) -> &Held {
        &self.head().value
    }

    /// Replaces the value and the version; returns the old value (to be
    /// dropped outside the lock).
    pub(super) fn set(&mut self, value: Held, version: u64) -> Held {
        let head = self.head_mut();
        head.version = version;
        std::mem::replace(&mut head.value, value)
    }

    pub(super) fn has_timer(&self) -> bool {
        self.flags() & TIMER != 0
    }

    /// The expiry, when the entry has one.
    pub(super) fn expires(&self) -> Option<Millis> {
        if self.flags() & ARMED == 0 {
            return None;
        }
        // SAFETY: ARMED is only set on nodes with a timer section.
        Some(unsafe { (*self.timer_ptr()).at })
    }

    pub(super) fn live(&self, now: Millis) -> bool {
        self.expires().is_none_or(|at| at > now)
    }

    /// [`live`](Self::live), reading the clock only for a node that has an
    /// expiry.
    #[inline]
    pub(super) fn live_now(&self, now: &Now) -> bool {
        self.expires().is_none_or(|at| at > now.get())
    }

    /// Marks the timer in (`Some(at)`) or out of the expiry index. The
    /// node must have a timer section (`has_timer`).
    pub(super) fn set_expires(&mut self, at: Option<Millis>) {
        debug_assert!(self.has_timer());
        if !self.has_timer() {
            return;
        }
        match at {
            Some(at) => {
                // SAFETY: checked above: the section exists.
                unsafe { (*self.timer_ptr()).at = at };
                self.head_mut().flags |= ARMED;
            }
            None => self.head_mut().flags &= !ARMED,
        }
    }

    /// Where the node is in its millisecond's list (an armed node).
    pub(super) fn timer_index(&self) -> usize {
        debug_assert!(self.expires().is_some());
        if !self.has_timer() {
            return 0;
        }
        // SAFETY: checked: the section exists.
        unsafe { (*self.timer_ptr()).index as usize }
    }

    /// Notes where the node is in its millisecond's list.
    pub(super) fn set_timer_index(&mut self, index: usize) {
        debug_assert!(self.has_timer());
        if self.has_timer() {
            // SAFETY: checked: the section exists. A millisecond's list is
            // bounded by the entries of a shard, which a u32 counts (a
            // store would need over 4 billion entries expiring in the same
            // millisecond in one shard to wrap it).
            unsafe { (*self.timer_ptr()).index = index as u32 };
        }
    }

    /// The node's links in the LRU list; `None` when it has no LRU section.
    pub(super) fn links(self, list: List) -> Option<*mut Links> {
        match list {
            // SAFETY: the section exists (checked).
            List::Lru if self.flags() & LRU != 0 => Some(unsafe { self.lru_ptr() }),
            List::Lru => None,
        }
    }

    /// The same entry in a new node that has a timer section (not armed,
    /// not in the expiry index). Its LRU links are copied: the caller points its
    /// neighbours (and the table) at the new node. The old node is freed.
    pub(super) fn grow_timer(self) -> NodeRef {
        let flags = self.flags();
        debug_assert!(flags & TIMER == 0);
        let key_len = self.head().key_len as usize;
        let new_flags = flags | TIMER;
        let p = allocate(layout(new_flags, key_len));
        let new = NodeRef(p);
        // SAFETY: `p` is a fresh allocation big enough for a head, a timer,
        // the LRU section if `flags` has one, and the key. The head is moved
        // bit for bit (its value is not dropped: the old node is freed
        // without running any destructor), then the flags are updated so
        // that the section offsets of `new` are right before they are used.
        unsafe {
            ptr::copy_nonoverlapping(self.0.as_ptr(), p.as_ptr(), 1);
            (*p.as_ptr()).flags = new_flags & !ARMED;
            new.timer_ptr().write(Timer { at: 0, index: 0 });
            if flags & LRU != 0 {
                new.lru_ptr().write(self.lru_ptr().read());
            }
            ptr::copy_nonoverlapping(self.key_ptr(), new.key_ptr(), key_len);
            alloc::dealloc(self.base(), layout(flags, key_len));
        }
        new
    }

    /// What malloc handed out for the node (tests only).
    #[cfg(test)]
    pub(super) fn usable_size(self) -> usize {
        // SAFETY: the node is a live allocation of the system allocator
        // (nodes are far below the size the bridge allocator maps itself).
        unsafe { libc::malloc_usable_size(self.base().cast()) }
    }

    /// Frees the node and gives back its value. It must be in no list and
    /// no table any more, and no copy of it be used again.
    pub(super) fn free(self) -> Held {
        let flags = self.flags();
        let key_len = self.head().key_len as usize;
        // SAFETY: the value is moved out exactly once, then the allocation
        // is released with the layout it was made with (same flags minus
        // ARMED, which does not change the layout, and the same key length).
        unsafe {
            let value = ptr::addr_of!((*self.0.as_ptr()).value).read();
            alloc::dealloc(self.base(), layout(flags, key_len));
            value
        }
    }
}

/// Which of a node's lists (one kind for now: the LRU order).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum List {
    Lru,
}

/// A doubly linked list of nodes through one of their sections.
#[derive(Default, Clone, Copy)]
pub(super) struct Chain {
    pub head: Option<NodeRef>,
    pub tail: Option<NodeRef>,
}

// SAFETY (for every method of `Chain`): the nodes linked are live nodes of
// the shard that owns the chain, which is only used under the shard's lock;
// each one has the section of `list` (they were pushed through it).
impl Chain {
    fn links(node: NodeRef, list: List) -> *mut Links {
        match node.links(list) {
            Some(l) => l,
            None => unreachable!("a node in a {list:?} list has that section"),
        }
    }

    /// Appends `node` (in no list of this kind yet).
    pub(super) fn push_back(&mut self, node: NodeRef, list: List) {
        let l = Self::links(node, list);
        // SAFETY: see the impl.
        unsafe {
            (*l).prev = self.tail;
            (*l).next = None;
            match self.tail {
                Some(t) => (*Self::links(t, list)).next = Some(node),
                None => self.head = Some(node),
            }
        }
        self.tail = Some(node);
    }

    /// Takes `node` out of this list.
    pub(super) fn unlink(&mut self, node: NodeRef, list: List) {
        let l = Self::links(node, list);
        // SAFETY: see the impl.
        unsafe {
            let Links { prev, next } = *l;
            match prev {
                Some(p) => (*Self::links(p, list)).next = next,
                None => self.head = next,
            }
            match next {
                Some(n) => (*Self::links(n, list)).prev = prev,
                None => self.tail = prev,
            }
            *l = Links::default();
        }
    }

    /// Makes the list refer to `new` wherever it referred to `old` (the
    /// same entry moved to a new node whose links are `old`'s).
    pub(super) fn replace(&mut self, old: NodeRef, new: NodeRef, list: List) {
        let l = Self::links(new, list);
        // SAFETY: see the impl.
        unsafe {
            let Links { prev, next } = *l;
            match prev {
                Some(p) => (*Self::links(p, list)).next = Some(new),
                None => self.head = Some(new),
            }
            match next {
                Some(n) => (*Self::links(n, list)).prev = Some(new),
                None => self.tail = Some(new),
            }
        }
        debug_assert!(self.head != Some(old) && self.tail != Some(old));
    }
}
