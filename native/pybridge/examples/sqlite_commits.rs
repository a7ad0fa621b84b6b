//! The floor of the SQLite backend's durable-write benchmark
//! (bench/backends.exs): a plain rusqlite loop committing one write per
//! transaction with the backend's durability settings (WAL,
//! `synchronous = FULL`, `BEGIN IMMEDIATE`), on a fresh file.
//!
//!     cargo run --release --example sqlite_commits -- PATH WRITES VALUE_BYTES
//!
//! prints the writes per second. With `-` for WRITES it reads a number of
//! writes per line from stdin, makes them (the keys go on from the last
//! line's) and prints the seconds they took, one line each, until stdin
//! closes: the bench alternates such chunks with chunks of its own writes,
//! so both see the same load on a shared machine.

use std::error::Error;
use std::io::{BufRead, Write};
use std::time::Instant;

use rusqlite::{params, Connection, TransactionBehavior};

fn commits(
    conn: &mut Connection,
    keys: std::ops::Range<u64>,
    value: &[u8],
) -> rusqlite::Result<()> {
    for i in keys {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("INSERT OR REPLACE INTO entries (key, value) VALUES (?1, ?2)")?
            .execute(params![format!("k{i}"), value])?;
        tx.commit()?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, writes, size] = &args[..] else {
        return Err("usage: sqlite_commits PATH WRITES|- VALUE_BYTES".into());
    };
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
    if writes != "-" {
        let writes: u64 = writes.parse()?;
        let started = Instant::now();
        commits(&mut conn, 0..writes, &value)?;
        println!("{}", writes as f64 / started.elapsed().as_secs_f64());
        return Ok(());
    }
    let mut next = 0;
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let n: u64 = line?.trim().parse()?;
        let started = Instant::now();
        commits(&mut conn, next..next + n, &value)?;
        next += n;
        writeln!(out, "{}", started.elapsed().as_secs_f64())?;
        out.flush()?;
    }
    Ok(())
}
