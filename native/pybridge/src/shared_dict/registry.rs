//! How dicts are made and found: every live dict by id (Python holds ids,
//! not handles) and the named ones by name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};

use super::backend::{self, Backend};
use super::locks::Locks;
use super::stats::Stats;
use super::{DictError, DictOptions, SharedDict};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Every live dict by id (for Python, which holds ids, not handles).
pub(super) fn ids() -> &'static Mutex<HashMap<u64, std::sync::Weak<SharedDict>>> {
    static IDS: OnceLock<Mutex<HashMap<u64, std::sync::Weak<SharedDict>>>> = OnceLock::new();
    IDS.get_or_init(Default::default)
}

pub(super) fn names() -> &'static Mutex<HashMap<String, Arc<SharedDict>>> {
    static NAMES: OnceLock<Mutex<HashMap<String, Arc<SharedDict>>>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

impl SharedDict {
    /// A new dict on the backend `opts` names; a named one is registered
    /// (and fails when the name is taken, before the backend is opened).
    /// A durable backend's keys that expired while it was closed are not
    /// removed yet: [`expire_due`](Self::expire_due) does that, once
    /// listeners are in place.
    pub fn new(opts: DictOptions) -> Result<Arc<SharedDict>, DictError> {
        if let Some(name) = &opts.name {
            if names().lock().contains_key(name) {
                return Err(DictError::NameTaken(name.clone()));
            }
        }
        let backend = backend::open(&opts)?;
        Self::with_backend(opts.name, backend)
    }

    /// A new dict on any backend.
    pub fn with_backend(
        name: Option<String>,
        backend: Box<dyn Backend>,
    ) -> Result<Arc<SharedDict>, DictError> {
        let blocking = backend.blocking();
        let gated = !backend.closes_exactly();
        let dict = Arc::new(SharedDict {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: name.clone(),
            backend,
            gate: RwLock::new(()),
            gated,
            destroyed: AtomicBool::new(false),
            blocking,
            stats: Stats::default(),
            listeners: RwLock::new(Vec::new()),
            active: AtomicUsize::new(0),
            swept: AtomicBool::new(false),
            wants_access: AtomicBool::new(false),
            locks: Locks::default(),
            telemetry_keys: AtomicBool::new(false),
        });
        if let Some(name) = name {
            let mut names = names().lock();
            if names.contains_key(&name) {
                return Err(DictError::NameTaken(name));
            }
            names.insert(name, dict.clone());
        }
        ids().lock().insert(dict.id, Arc::downgrade(&dict));
        dict.backend.attach(Arc::downgrade(&dict));
        Ok(dict)
    }

    /// The live dict with this id.
    pub fn by_id(id: u64) -> Option<Arc<SharedDict>> {
        let weak = ids().lock().get(&id).cloned()?;
        weak.upgrade().filter(|d| !d.is_destroyed())
    }

    /// The live dict named `name`.
    pub fn lookup(name: &str) -> Option<Arc<SharedDict>> {
        names().lock().get(name).cloned()
    }

    /// Every live dict (named or not, made by the BEAM or by Python), in
    /// the order they were made.
    pub fn all() -> Vec<Arc<SharedDict>> {
        let mut all: Vec<Arc<SharedDict>> = ids()
            .lock()
            .values()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        all.retain(|d| !d.is_destroyed());
        all.sort_by_key(|d| d.id);
        all
    }
}
