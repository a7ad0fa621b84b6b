//! What the Redis backend's tests share: a `redis-server` of the test's
//! own ([`TestServer`], on a free loopback port, in a temp dir; without one
//! installed the tests fail, saying so: `make deps` installs it), one
//! node's view of a dict ([`node`]), a listener that records what it hears
//! ([`Seen`]), integer values, answers that come on a channel, and waiting
//! on state ([`until`]).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::batch::Batcher;
use super::reads::Reader;
use super::{Redis, Shared};
use crate::convert::Value;
use crate::shared_dict::{
    Condition, DictError, EventKind, Expiry, Found, GetDone, Item, Listener, Now, PutDone,
    SharedDict, Stored,
};

/// A free loopback port.
pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `redis-server` of the test's own.
pub struct TestServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl TestServer {
    pub fn start() -> TestServer {
        assert!(
            Command::new("redis-server")
                .arg("--version")
                .output()
                .is_ok(),
            "no redis-server installed: `make deps` installs it"
        );
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("pybridge-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut s = TestServer {
            port,
            dir,
            child: None,
        };
        s.spawn();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(c) = redis::Client::open(self.url()) {
                if let Ok(mut c) = c.get_connection() {
                    if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// Kills the server (no shutdown save: what the append-only file has
    /// is what survives).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills it and starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("a test connection")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The parts of one node's backend the tests hold on to.
pub(super) struct Parts {
    pub shared: Arc<Shared>,
    pub batcher: Arc<Batcher>,
    pub reader: Arc<Reader>,
}

/// A dict named `name` on `url` (prefix `t`), as one node sees it
/// (unregistered, so two of them can live in one test process like two
/// nodes), nobody listening.
pub(super) fn node(url: &str, name: &str) -> (Arc<SharedDict>, Parts) {
    node_with(url, "t", name, 4)
}

/// [`node`] under `prefix`, with a pool of `pool` connections.
pub(super) fn node_with(
    url: &str,
    prefix: &str,
    name: &str,
    pool: usize,
) -> (Arc<SharedDict>, Parts) {
    let r = Redis::open(url, prefix, Some(name), pool).expect("opens");
    let parts = Parts {
        shared: r.shared.clone(),
        batcher: r.batch.clone(),
        reader: r.reads.clone(),
    };
    let d = SharedDict::with_backend(None, Box::new(r)).expect("dict");
    (d, parts)
}

/// Every event a node raised (kind, key, the value it carried) and every
/// release it was told of.
#[derive(Default)]
pub(super) struct Seen {
    /// Asks for the values events carry (as a Python callback does).
    values: bool,
    events: Mutex<Vec<(EventKind, String, Option<Item>)>>,
    released: Mutex<Vec<String>>,
}

impl Listener for Seen {
    fn wants_values(&self) -> bool {
        self.values
    }
    fn event(&self, kind: EventKind, key: &str, value: Option<&Item>) {
        self.events
            .lock()
            .push((kind, key.to_owned(), value.cloned()));
    }
    fn unlocked(&self, key: &str) {
        self.released.lock().push(key.to_owned());
    }
}

impl Seen {
    /// One that asks for the values events carry.
    pub(super) fn with_values() -> Seen {
        Seen {
            values: true,
            ..Seen::default()
        }
    }

    /// A new one listening to `d`, asking for values when `values`.
    pub(super) fn on(d: &Arc<SharedDict>, values: bool) -> Arc<Seen> {
        let seen = Arc::new(if values {
            Seen::with_values()
        } else {
            Seen::default()
        });
        d.listen(seen.clone()).expect("listen");
        seen
    }

    /// The events heard so far, in order: kind and key.
    pub(super) fn heard(&self) -> Vec<(EventKind, String)> {
        let events = self.events.lock();
        events.iter().map(|(e, k, _)| (*e, k.clone())).collect()
    }

    /// The events heard so far with their values.
    pub(super) fn items(&self) -> Vec<(EventKind, String, Option<Item>)> {
        self.events.lock().clone()
    }

    /// The events heard so far with their integer values (`None`: no
    /// value, or not an integer).
    pub(super) fn ints(&self) -> Vec<(EventKind, String, Option<i64>)> {
        let events = self.events.lock();
        let int = |v: &Item| match &**v {
            Stored::Plain(Value::Int(i)) => Some(*i),
            _ => None,
        };
        events
            .iter()
            .map(|(e, k, v)| (*e, k.clone(), v.as_ref().and_then(int)))
            .collect()
    }

    /// Whether an event heard so far matches `f` (nothing copied).
    pub(super) fn any(&self, f: impl FnMut(&(EventKind, String, Option<Item>)) -> bool) -> bool {
        self.events.lock().iter().any(f)
    }

    /// How many events were heard so far.
    pub(super) fn len(&self) -> usize {
        self.events.lock().len()
    }

    /// Forgets the events heard so far.
    pub(super) fn clear(&self) {
        self.events.lock().clear();
    }

    /// The keys whose release was announced, in order.
    pub(super) fn released(&self) -> Vec<String> {
        self.released.lock().clone()
    }
}

pub(super) fn int(v: i64) -> Stored {
    Stored::Plain(Value::Int(v))
}

/// The integer `item` holds.
pub(super) fn as_int(item: &Stored) -> i64 {
    match item {
        Stored::Plain(Value::Int(i)) => *i,
        other => panic!("not an int: {other:?}"),
    }
}

/// The integer a get found (`None`: missing).
pub(super) fn int_of(found: &Option<(Found, u64)>) -> Option<i64> {
    found.as_ref().map(|(item, _)| as_int(item))
}

/// The integer at `k` in `d` (`None`: missing).
pub(super) fn get_int(d: &SharedDict, k: &str) -> Option<i64> {
    int_of(&d.get(k).expect("get"))
}

/// Waits (up to 10 s) until `f` holds: a latch on state, not a timing.
pub(super) fn until(what: &str, f: impl FnMut() -> bool) {
    until_within(what, Duration::from_secs(10), f);
}

/// Waits (up to `most`) until `f` holds.
pub(super) fn until_within(what: &str, most: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + most;
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What came on `rx` (within 10 s: it must come).
pub(super) fn answered<T>(rx: &mpsc::Receiver<T>) -> T {
    rx.recv_timeout(Duration::from_secs(10)).expect("answered")
}

/// Runs `f` on a thread of its own (a caller that waits); its result comes
/// on the receiver.
pub(super) fn waiting<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// Queues a put of `v` that does not wait ([`SharedDict::put_later`]);
/// its answer comes on the receiver. `None`: not queued.
pub(super) fn put_later(
    d: &Arc<SharedDict>,
    key: &str,
    v: i64,
    cond: Condition,
) -> Option<mpsc::Receiver<Result<u64, DictError>>> {
    let (tx, rx) = mpsc::channel();
    let done: PutDone = Box::new(move |out| {
        let _ = tx.send(out);
    });
    d.put_later(key, int(v), Expiry::Never, cond, &Now::lazy(), done)
        .then_some(rx)
}

/// What a get that does not wait is answered.
pub(super) type GetAnswer = Option<Result<Option<(Found, u64)>, DictError>>;

/// Queues a get of `key` that does not wait ([`SharedDict::get_later`]);
/// its answer comes on the receiver. It must be queued (behind a read
/// held on its way).
pub(super) fn get_later(d: &Arc<SharedDict>, key: &str) -> mpsc::Receiver<GetAnswer> {
    let (tx, rx) = mpsc::channel();
    let done: GetDone = Box::new(move |out| {
        let _ = tx.send(out);
    });
    assert!(d.get_later(key, done), "queued behind the held read");
    rx
}
