//! One simulated host as the harness sees it: its clocks, whether its
//! daemon runs, its engine and chitchat incarnation, and its jobs with
//! their true state (waiting, or running until really stopped).

use super::super::{Engine, Now};
use super::net::Inc;
use sc_protocol::dl::NodeGen;
use std::collections::BTreeMap;

/// Wall clock at simulated time 0 (a plausible epoch ms).
const WALL0: u64 = 1_750_000_000_000;

/// A host's clocks: CLOCK_BOOTTIME runs at its own rate from its own
/// origin; the wall clock is off by a skew (and may be stepped).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub boot: u64,
    pub ppm: i64,
    pub skew: i64,
}

impl Clock {
    pub fn mono(&self, t: u64) -> u64 {
        let drift = i128::from(t) * i128::from(self.ppm) / 1_000_000;
        (i128::from(self.boot) + i128::from(t) + drift) as u64
    }
    pub fn now(&self, t: u64) -> Now {
        Now {
            mono_ms: self.mono(t),
            wall_ms: (WALL0 as i64 + t as i64 + self.skew) as u64,
        }
    }
    /// The first simulated ms at which this host's monotonic clock reads
    /// `mono` (where its stopper fires).
    pub fn true_at(&self, mono: u64) -> u64 {
        if mono <= self.mono(0) {
            return 0;
        }
        let guess =
            (i128::from(mono - self.boot) * 1_000_000 / (1_000_000 + i128::from(self.ppm))) as u64;
        let mut t = guess.saturating_sub(2);
        while self.mono(t) < mono {
            t += 1;
        }
        t
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Never started, or crashed: no engine, no chitchat, no jobs.
    Off,
    Up,
    /// SIGSTOP of the whole daemon: nothing steps or gossips; its jobs run
    /// on under their stoppers.
    Paused,
    /// The engine's loop is stuck but chitchat still heartbeats.
    Stalled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Waiting,
    /// Granted and running; `deadline` is the stopper's, in simulated ms.
    Running {
        since: u64,
        tokens: Vec<(String, u64)>,
        deadline: Option<u64>,
        stopping: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Job {
    pub needs: Vec<(String, u32)>,
    pub prio: i32,
    pub asked: u64,
    pub hold: u64,
    pub state: JobState,
}

pub struct Host {
    pub name: String,
    pub clock: Clock,
    pub life: Life,
    pub engine: Option<Engine>,
    pub inc: Option<Inc>,
    pub generation: u64,
    /// Bumped at every start and crash: events of an older life are void.
    pub epoch: u64,
    /// DOWN votes the daemon persisted.
    pub votes: Vec<NodeGen>,
    pub jobs: BTreeMap<u64, Job>,
    /// Last `dl` version handed to this engine, per incarnation.
    pub seen: Vec<u32>,
    /// Jobs that ended while the engine could not be told.
    pub unreleased: Vec<u64>,
    pub wake_token: u64,
    pub wake_at: u64,
    pub restarting: bool,
    pub max_jobs: usize,
    /// When the engine last stepped (simulated ms).
    pub last_step: u64,
}

impl Host {
    pub fn new(name: String, clock: Clock, max_jobs: usize) -> Host {
        Host {
            name,
            clock,
            life: Life::Off,
            engine: None,
            inc: None,
            generation: 0,
            epoch: 0,
            votes: Vec::new(),
            jobs: BTreeMap::new(),
            seen: Vec::new(),
            unreleased: Vec::new(),
            wake_token: 0,
            wake_at: u64::MAX,
            restarting: false,
            max_jobs,
            last_step: 0,
        }
    }
}
