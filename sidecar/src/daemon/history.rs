//! The history store: every finished job in `history.redb` in the state dir
//! (redb: ACID, copy-on-write, fsync at each commit, so a crash leaves the
//! last committed record set), and the in-memory summary of each command's
//! recent runs that learned memory requests are computed from.
//!
//! Records are keyed by (end time, job id), so they list in the order jobs
//! ended; beyond `history_keep` the oldest are dropped. Values are JSON, so
//! a field added later (with a default) still reads old records.
//!
//! The summary is rebuilt from the store at startup and updated as jobs
//! end, so the enqueue path only looks in a map (one mutex, no I/O). A store
//! that cannot be opened or read is logged and left out: jobs run, learning
//! works from the jobs this daemon sees, and history is not kept.

use crate::learning::{LearnParams, Learned, Run, learn, run_of};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use sc_protocol::HistoryEntry;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file is not a usable redb database (as opposed to one we may not
/// open now: permissions, a full disk), so a new one may replace it.
fn is_unreadable(e: &redb::DatabaseError) -> bool {
    use redb::{DatabaseError, StorageError};
    match e {
        DatabaseError::Storage(StorageError::Corrupted(_)) | DatabaseError::UpgradeRequired(_) => {
            true
        }
        DatabaseError::Storage(StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::InvalidData
        }
        _ => false,
    }
}

/// (ended_at ms, job id) → the entry as JSON.
const JOBS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("jobs");

/// A command as learning tells commands apart: argv and cwd. The name is a
/// label and the environment is not sent, so neither is part of it.
type Key = (Vec<String>, String);

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history store {path}: not open (see the daemon log)")]
    NotOpen { path: PathBuf },
    #[error("history store {path}: {message}")]
    Store { path: PathBuf, message: String },
}

pub struct History {
    db: Option<redb::Database>,
    path: PathBuf,
    keep: u64,
    params: LearnParams,
    summary: Mutex<Summary>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("path", &self.path)
            .field("open", &self.db.is_some())
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Summary {
    by_key: HashMap<Key, Recent>,
    /// Bumped per recorded run: which command ran least recently.
    tick: u64,
}

struct Recent {
    runs: VecDeque<Run>,
    last: u64,
}

impl Summary {
    fn add(&mut self, key: Key, run: Run, window: usize, max_keys: usize) {
        self.tick += 1;
        let tick = self.tick;
        let r = self.by_key.entry(key).or_insert_with(|| Recent {
            runs: VecDeque::new(),
            last: tick,
        });
        r.runs.push_back(run);
        while r.runs.len() > window {
            r.runs.pop_front();
        }
        r.last = tick;
        // Commands beyond what the store keeps are forgotten, least
        // recently run first (rare: one scan per new command past the cap).
        while self.by_key.len() > max_keys {
            let Some(oldest) = self
                .by_key
                .iter()
                .min_by_key(|(_, r)| r.last)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.by_key.remove(&oldest);
        }
    }
}

fn store_err(path: &Path) -> impl Fn(String) -> HistoryError + '_ {
    move |message| HistoryError::Store {
        path: path.to_path_buf(),
        message,
    }
}

impl History {
    /// Open (or create) `history.redb` in `dir` and rebuild the summary.
    /// Never fails: a corrupt file is moved aside and a new one started;
    /// any other failure leaves the daemon without a history store.
    pub fn open(dir: &Path, params: LearnParams, keep: u32) -> History {
        let path = dir.join("history.redb");
        let db = match redb::Database::create(&path) {
            Ok(db) => Some(db),
            Err(e) if is_unreadable(&e) => {
                let aside = dir.join(format!("history.redb.bad-{}", super::state::wall_ms()));
                tracing::error!(
                    "history store {} is unreadable ({e}); moving it to {} and starting a new one",
                    path.display(),
                    aside.display()
                );
                std::fs::rename(&path, &aside)
                    .map_err(|e| e.to_string())
                    .and_then(|()| redb::Database::create(&path).map_err(|e| e.to_string()))
                    .inspect_err(|e| {
                        tracing::error!(
                            "history store {}: {e}; running without one",
                            path.display()
                        );
                    })
                    .ok()
            }
            Err(e) => {
                tracing::error!(
                    "cannot open history store {}: {e}; running without one (finished jobs are not recorded)",
                    path.display()
                );
                None
            }
        };
        let history = History {
            db,
            path,
            keep: u64::from(keep.max(1)),
            params,
            summary: Mutex::default(),
        };
        history.rebuild_summary();
        history
    }

    fn max_keys(&self) -> usize {
        self.keep as usize
    }

    fn summary(&self) -> std::sync::MutexGuard<'_, Summary> {
        self.summary.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rebuild_summary(&self) {
        let mut bad = 0usize;
        let mut s = Summary::default();
        let result = self.for_each(|entry| match entry {
            Ok(e) => {
                if let Some(run) = run_of(&e.outcome, &e.usage) {
                    s.add((e.argv, e.cwd), run, self.params.runs, self.max_keys());
                }
            }
            Err(_) => bad += 1,
        });
        if let Err(e) = result {
            tracing::error!("cannot read the history to learn from: {e}");
        }
        if bad > 0 {
            tracing::warn!(
                "history store {}: skipped {bad} unreadable record(s)",
                self.path.display()
            );
        }
        *self.summary() = s;
    }

    /// Every entry, oldest first (undecodable ones as `Err`).
    fn for_each(
        &self,
        mut f: impl FnMut(Result<HistoryEntry, String>),
    ) -> Result<(), HistoryError> {
        let Some(db) = &self.db else {
            return Ok(());
        };
        let err = store_err(&self.path);
        let tx = db.begin_read().map_err(|e| err(e.to_string()))?;
        let table = match tx.open_table(JOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(err(e.to_string())),
        };
        for item in table.iter().map_err(|e| err(e.to_string()))? {
            let (_, v) = item.map_err(|e| err(e.to_string()))?;
            f(serde_json::from_slice(v.value()).map_err(|e| e.to_string()));
        }
        Ok(())
    }

    /// Record a finished job: learn from it, then write it (one fsynced
    /// transaction, dropping the oldest entries beyond `keep`). Slow: call
    /// off the async runtime.
    pub fn record(&self, entry: &HistoryEntry) -> Result<(), HistoryError> {
        if let Some(run) = run_of(&entry.outcome, &entry.usage) {
            let key = (entry.argv.clone(), entry.cwd.clone());
            let (window, max_keys) = (self.params.runs, self.max_keys());
            self.summary().add(key, run, window, max_keys);
        }
        // Without a store (said once at startup), learning still works.
        let Some(db) = &self.db else {
            return Ok(());
        };
        let err = store_err(&self.path);
        let bytes = serde_json::to_vec(entry).map_err(|e| err(e.to_string()))?;
        let tx = db.begin_write().map_err(|e| err(e.to_string()))?;
        {
            let mut table = tx.open_table(JOBS).map_err(|e| err(e.to_string()))?;
            table
                .insert((entry.ended_at, entry.id), bytes.as_slice())
                .map_err(|e| err(e.to_string()))?;
            while table.len().map_err(|e| err(e.to_string()))? > self.keep {
                if table.pop_first().map_err(|e| err(e.to_string()))?.is_none() {
                    break;
                }
            }
        }
        tx.commit().map_err(|e| err(e.to_string()))
    }

    /// What the recent runs of `argv` in `cwd` say it needs (in memory).
    pub fn learned(&self, argv: &[String], cwd: &str) -> Option<Learned> {
        let s = self.summary();
        let key = (argv.to_vec(), cwd.to_string());
        let recent = s.by_key.get(&key)?;
        let runs: Vec<Run> = recent.runs.iter().copied().collect();
        learn(&runs, &self.params)
    }

    pub fn params(&self) -> &LearnParams {
        &self.params
    }

    /// The last `limit` entries (0: all), oldest first, and how many
    /// records could not be read.
    pub fn list(&self, limit: u32) -> Result<(Vec<HistoryEntry>, usize), HistoryError> {
        let Some(db) = &self.db else {
            return Err(HistoryError::NotOpen {
                path: self.path.clone(),
            });
        };
        let err = store_err(&self.path);
        let tx = db.begin_read().map_err(|e| err(e.to_string()))?;
        let table = match tx.open_table(JOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), 0)),
            Err(e) => return Err(err(e.to_string())),
        };
        let take = if limit == 0 {
            usize::MAX
        } else {
            limit as usize
        };
        let mut out = Vec::new();
        let mut bad = 0;
        for item in table.iter().map_err(|e| err(e.to_string()))?.rev() {
            if out.len() >= take {
                break;
            }
            let (_, v) = item.map_err(|e| err(e.to_string()))?;
            match serde_json::from_slice::<HistoryEntry>(v.value()) {
                Ok(e) => out.push(e),
                Err(_) => bad += 1,
            }
        }
        out.reverse();
        Ok((out, bad))
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
