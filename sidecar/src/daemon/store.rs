//! What the daemon keeps on disk in its state dir, so a restart loses
//! nothing it acknowledged.
//!
//! - `jobs/<id>.json`: one file per live (queued or running) job, written
//!   before the job is acknowledged and removed once its end is recorded;
//! - `history.redb`: every finished job (see `history.rs`);
//! - `next_id`: the next job id, so ids are never reused;
//! - `services/<name>.json`: each service added at run time, with whether
//!   it should be running, written before `sc service add` is answered.
//!
//! Files are written to a temp name and renamed, so a reader sees a whole
//! record or none. There is no fsync: the records must survive a daemon crash
//! or restart (the page cache does), and a power loss ends the jobs anyway.

use sc_protocol::{ExecRequest, JobId};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersistedState {
    Queued,
    Running { pid: u32 },
}

/// A live job as written to `jobs/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedJob {
    pub id: JobId,
    pub seq: u64,
    pub owner: u32,
    pub exec: ExecRequest,
    pub reserved: u64,
    pub state: PersistedState,
    /// Unix time in ms.
    pub queued_at: u64,
    pub started_at: Option<u64>,
    /// Its leased ports (`--port`), so they stay its own after a restart.
    #[serde(default)]
    pub ports: Vec<(String, u16)>,
    /// Where `reserved` came from (absent in records of older daemons).
    #[serde(default)]
    pub mem_source: Option<sc_protocol::MemSource>,
    /// Why it is frozen, if the daemon froze it (memory pressure or a
    /// preemption): a restarted daemon thaws it when that reason passes,
    /// instead of taking it for a pause by hand.
    #[serde(default)]
    pub paused_by: Option<sc_protocol::PauseReason>,
}

/// A service added at run time, as written to `services/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedService {
    pub spec: sc_protocol::ServiceSpec,
    pub owner: u32,
    /// Start it when the daemon starts.
    pub enabled: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("state dir {path}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// Jobs whose record was removed (ended). A record written after the
    /// end — the placement's write racing a job that ended within
    /// milliseconds — would bring the job back at the next start; the lock
    /// makes "skip if ended, else write" and "mark ended, remove" atomic.
    ended: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<JobId>>>,
    /// Finished jobs and what they teach (`None` until attached at startup).
    history: Option<std::sync::Arc<super::history::History>>,
}

/// Ended job ids remembered (ids are never reused; the oldest are dropped).
const ENDED_KEEP: usize = 4096;

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        for sub in ["jobs", "services", "logs"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(err(&d))?;
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            ended: Default::default(),
            history: None,
        })
    }

    /// Keep finished jobs in (and learn from) `history`.
    pub fn attach_history(&mut self, history: std::sync::Arc<super::history::History>) {
        self.history = Some(history);
    }

    pub fn history(&self) -> Option<&super::history::History> {
        self.history.as_deref()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(err(path))
    }

    pub fn next_id(&self) -> Result<JobId, StoreError> {
        let path = self.dir.join("next_id");
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().parse().unwrap_or(1)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
            Err(e) => Err(err(&path)(e)),
        }
    }

    pub fn set_next_id(&self, id: JobId) -> Result<(), StoreError> {
        self.write_atomic(&self.dir.join("next_id"), id.to_string().as_bytes())
    }

    fn job_path(&self, id: JobId) -> PathBuf {
        self.dir.join("jobs").join(format!("{id}.json"))
    }

    /// Write the record of a job just accepted. The file is new, so it is
    /// written in place with one `write` (no temp file, no rename): a crash
    /// can only leave a short file for a job that was never acknowledged,
    /// which loading reports and skips.
    pub fn create_job(&self, job: &PersistedJob) -> Result<(), StoreError> {
        let path = self.job_path(job.id);
        let bytes = serde_json::to_vec(job).map_err(|e| StoreError {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(err(&path))?;
        f.write_all(&bytes).map_err(err(&path))
    }

    /// Replace a job's record (temp file and rename: a reader sees the old
    /// record or the new one, never a mix).
    pub fn save_job(&self, job: &PersistedJob) -> Result<(), StoreError> {
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        if ended.contains(&job.id) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(job).map_err(|e| StoreError {
            path: self.job_path(job.id),
            source: std::io::Error::other(e),
        })?;
        self.write_atomic(&self.job_path(job.id), &bytes)
    }

    pub fn remove_job(&self, id: JobId) -> Result<(), StoreError> {
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        ended.insert(id);
        while ended.len() > ENDED_KEEP {
            ended.pop_first();
        }
        remove_if_exists(&self.job_path(id))
    }

    /// Every live job record; unreadable ones are reported and skipped.
    pub fn load_jobs(&self) -> (Vec<PersistedJob>, Vec<String>) {
        let (mut jobs, problems) = load_dir::<PersistedJob>(&self.dir.join("jobs"));
        jobs.sort_by_key(|j| j.id);
        (jobs, problems)
    }

    fn service_path(&self, name: &str) -> PathBuf {
        self.dir.join("services").join(format!("{name}.json"))
    }

    /// Where services' logs go.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn save_service(&self, svc: &PersistedService) -> Result<(), StoreError> {
        let path = self.service_path(&svc.spec.name);
        let bytes = serde_json::to_vec(svc).map_err(|e| StoreError {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.write_atomic(&path, &bytes)
    }

    pub fn remove_service(&self, name: &str) -> Result<(), StoreError> {
        remove_if_exists(&self.service_path(name))
    }

    /// Every run-time service; unreadable records are reported and skipped.
    pub fn load_services(&self) -> (Vec<PersistedService>, Vec<String>) {
        let (mut out, problems) = load_dir::<PersistedService>(&self.dir.join("services"));
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        (out, problems)
    }

    /// Record a finished job in the history store (slow: fsync).
    pub fn record_history(
        &self,
        entry: &sc_protocol::HistoryEntry,
    ) -> Result<(), super::history::HistoryError> {
        match &self.history {
            Some(h) => h.record(entry),
            None => Ok(()),
        }
    }
}

fn remove_if_exists(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(path)(e)),
    }
}

/// Every `*.json` record in `dir`; unreadable ones are reported, not fatal.
fn load_dir<T: serde::de::DeserializeOwned>(dir: &Path) -> (Vec<T>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (out, problems),
        Err(e) => {
            problems.push(format!("{}: {e}", dir.display()));
            return (out, problems);
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<T>(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => out.push(r),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> ExecRequest {
        ExecRequest {
            argv: vec!["true".into()],
            cwd: "/".into(),
            requests: Default::default(),
            priority: 0,
            name: None,
            uid: 0,
            client_pid: 1,
            timeout_ms: None,
            pid: 1,
            wait_for: vec![],
            wait_timeout_ms: None,
            needs: Vec::new(),
            no_preempt: false,
            ports: Vec::new(),
        }
    }

    #[test]
    fn jobs_round_trip_and_bad_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let job = PersistedJob {
            id: 3,
            seq: 3,
            owner: 1000,
            exec: exec(),
            reserved: 1 << 20,
            state: PersistedState::Running { pid: 42 },
            queued_at: 1,
            started_at: Some(2),
            ports: vec![("web".into(), 20001)],
            mem_source: None,
            paused_by: None,
        };
        store.save_job(&job).unwrap();
        std::fs::write(dir.path().join("jobs/9.json"), b"{not json").unwrap();
        let (jobs, problems) = store.load_jobs();
        assert_eq!(jobs, vec![job]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("9.json"));
        store.remove_job(3).unwrap();
        store.remove_job(3).unwrap();
        assert!(store.load_jobs().0.is_empty());
    }

    #[test]
    fn next_id_persists() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.next_id().unwrap(), 1);
        store.set_next_id(17).unwrap();
        assert_eq!(Store::open(dir.path()).unwrap().next_id().unwrap(), 17);
    }
}
