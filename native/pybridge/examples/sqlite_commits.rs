//! The floor of the SQLite backend's durable-write benchmark
//! (bench/backends.exs): a plain rusqlite loop committing one write per
//! transaction with the backend's durability settings (WAL,
//! `synchronous = FULL`, `BEGIN IMMEDIATE`), on a fresh file.
//!
//!     cargo run --release --example sqlite_commits -- PATH WRITES VALUE_BYTES
//!
//! Prints the writes per second.

use std::error::Error;
use std::time::Instant;

use rusqlite::{params, Connection, TransactionBehavior};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, writes, size] = &args[..] else {
        return Err("usage: sqlite_commits PATH WRITES VALUE_BYTES".into());
    };
    let writes: u64 = writes.parse()?;
    let size: usize = size.parse()?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let mut conn = Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    assert!(mode.eq_ignore_ascii_case("wal"), "journal mode {mode}");
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE entries (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;",
    )?;
    let value = vec![7u8; size];
    let started = Instant::now();
    for i in 0..writes {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("INSERT OR REPLACE INTO entries (key, value) VALUES (?1, ?2)")?
            .execute(params![format!("k{i}"), value])?;
        tx.commit()?;
    }
    println!("{}", writes as f64 / started.elapsed().as_secs_f64());
    Ok(())
}
