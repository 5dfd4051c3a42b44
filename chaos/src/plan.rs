//! The fault plan: kinds of fault and the schedule drawn from the seed
//! before the run starts (kinds, times, durations, and a number that picks
//! the targets), so one seed means one plan.

use crate::util::{MS, Rng, SEC};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    KillDaemon,
    KillHolder,
    KillClient,
    StopDaemon,
    StopHolder,
    Isolate,
    Split,
    OneWay,
    PairCut,
    Flap,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::KillDaemon => "kill -9 daemon",
            Kind::KillHolder => "kill -9 holder's daemon",
            Kind::KillClient => "kill -9 sc exec",
            Kind::StopDaemon => "SIGSTOP daemon",
            Kind::StopHolder => "SIGSTOP holder's daemon",
            Kind::Isolate => "link down",
            Kind::Split => "partition (split)",
            Kind::OneWay => "one-way cut",
            Kind::PairCut => "pair cut (non-transitive)",
            Kind::Flap => "flapping link",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Fault {
    /// From the start of the fault phase.
    pub at: u64,
    pub kind: Kind,
    /// Drawn once; picks targets.
    pub r: u64,
    pub dur: u64,
}

/// The schedule for a run: one fault every `every` on average.
pub fn schedule(seed: u64, duration: u64, every: u64, one_way: bool) -> Vec<Fault> {
    let mut rng = Rng::fork(seed, 1);
    let mut out = Vec::new();
    let mut t = 2 * SEC;
    while t < duration {
        let mut kind = [
            Kind::KillDaemon,
            Kind::KillHolder,
            Kind::KillClient,
            Kind::StopDaemon,
            Kind::StopHolder,
            Kind::Isolate,
            Kind::Split,
            Kind::OneWay,
            Kind::PairCut,
            Kind::Flap,
        ][rng.weighted(&[12, 14, 18, 7, 7, 10, 10, 8, 6, 8])];
        if kind == Kind::OneWay && !one_way {
            kind = Kind::PairCut;
        }
        let dur = match kind {
            Kind::KillDaemon => rng.range(1000, 6000),
            Kind::KillHolder => rng.range(2000, 8000),
            Kind::KillClient => 0,
            // 0.3x, 1x and 2-3x T_down (5 s with lease 3 s).
            Kind::StopDaemon | Kind::StopHolder => match rng.weighted(&[25, 50, 25]) {
                0 => rng.range(800, 2000),
                1 => rng.range(3000, 6000),
                _ => rng.range(8000, 15000),
            },
            Kind::Isolate | Kind::Split | Kind::PairCut => rng.range(2000, 10000),
            Kind::OneWay => rng.range(2000, 8000),
            Kind::Flap => rng.range(3000, 6000),
        } * MS;
        out.push(Fault {
            at: t,
            kind,
            r: rng.next(),
            dur,
        });
        t += rng.range(every * 3 / 10, every * 17 / 10).max(100 * MS);
    }
    out
}
