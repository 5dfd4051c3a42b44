//! Reading a stopped daemon's history store (`history.redb` in its state
//! dir) directly, for harnesses that check every end after the daemons are
//! gone (the chaos suite). A running daemon holds the file: ask it with
//! `sc history --json` instead.
//!
//! The layout mirrors `sidecar/src/daemon/history.rs`: one table "jobs",
//! key (ended_at ms, job id), value the entry as JSON.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;
use std::path::Path;

const JOBS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("jobs");

/// Every entry of the state dir's history store, oldest first, as JSON.
/// A missing store is empty; an unreadable one is an error naming it.
pub fn history_of(state_dir: &Path) -> Result<Vec<Value>, String> {
    let path = state_dir.join("history.redb");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let db = redb::Database::open(&path).map_err(|e| what(&e))?;
    let tx = db.begin_read().map_err(|e| what(&e))?;
    let table = match tx.open_table(JOBS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(what(&e)),
    };
    let mut out = Vec::new();
    for item in table.iter().map_err(|e| what(&e))? {
        let (_, v) = item.map_err(|e| what(&e))?;
        out.push(serde_json::from_slice(v.value()).map_err(|e| what(&e))?);
    }
    Ok(out)
}
