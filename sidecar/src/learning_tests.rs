//! Table tests of the learned-request rules.

use super::*;

const M: u64 = 1 << 20;

fn ok(peak_mib: u64) -> Run {
    Run {
        peak: peak_mib * M,
        oom_killed: false,
    }
}

fn oom(peak_mib: u64) -> Run {
    Run {
        peak: peak_mib * M,
        oom_killed: true,
    }
}

fn params(runs: usize, percentile: u8, headroom: f64) -> LearnParams {
    LearnParams {
        enabled: true,
        runs,
        percentile,
        headroom,
    }
}

/// (what, runs oldest first, params, learned (MiB, runs)).
type LearnCase = (&'static str, Vec<Run>, LearnParams, Option<(u64, u32)>);

/// (what, --mem, learned, usable, params, reserved, source, reason contains).
type ChooseCase<'a> = (
    &'static str,
    Option<u64>,
    Option<Learned>,
    u64,
    &'a LearnParams,
    u64,
    MemSource,
    &'static str,
);

#[test]
fn learn_table() {
    #[rustfmt::skip]
    let cases: Vec<LearnCase> = vec![
        ("no runs", vec![], params(10, 90, 1.2), None),
        ("one run, no headroom", vec![ok(100)], params(10, 90, 1.0), Some((100, 1))),
        ("one run, 20% headroom", vec![ok(100)], params(10, 90, 1.2), Some((120, 1))),
        // Nearest rank: p90 of 10 values is the 9th smallest.
        ("p90 of ten skips the top one",
         (1..=10).map(|i| ok(i * 10)).collect(), params(10, 90, 1.0), Some((90, 10))),
        ("p100 is the max",
         (1..=10).map(|i| ok(i * 10)).collect(), params(10, 100, 1.0), Some((100, 10))),
        ("p50 of four is the 2nd", vec![ok(40), ok(10), ok(30), ok(20)], params(10, 50, 1.0), Some((20, 4))),
        // Only the last `runs` count: the old 900 MiB run is forgotten.
        ("window keeps the newest", vec![ok(900), ok(10), ok(20)], params(2, 100, 1.0), Some((20, 2))),
        // An OOM-killed run's peak is a lower bound even if the percentile
        // would have skipped it.
        ("oom floor beats the percentile",
         vec![ok(10), ok(10), ok(10), ok(10), ok(10), ok(10), ok(10), ok(10), ok(10), oom(64)],
         params(10, 50, 1.0), Some((64, 10))),
        ("oom floor gets headroom too", vec![oom(100)], params(10, 90, 1.5), Some((150, 1))),
        // Rounded up to a whole MiB.
        ("tiny peaks round up to 1 MiB", vec![Run { peak: 4096, oom_killed: false }], params(10, 90, 1.2), Some((1, 1))),
        ("window of 0 acts as 1", vec![ok(5), ok(7)], params(0, 90, 1.0), Some((7, 1))),
    ];
    for (what, runs, p, want) in cases {
        let got = learn(&runs, &p).map(|l| (l.mem / M, l.runs));
        assert_eq!(got, want, "{what}");
        if let Some(l) = learn(&runs, &p) {
            assert_eq!(l.mem % M, 0, "{what}: not whole MiB");
        }
    }
}

#[test]
fn run_of_table() {
    let usage = |peak: Option<u64>, oom_kills: u64| JobUsage {
        peak_mem: peak,
        oom_kills,
        ..Default::default()
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, JobUsage, Option<Run>)> = vec![
        ("exited", usage(Some(5 * M), 0), Some(ok(5))),
        ("signal", usage(Some(5 * M), 1), Some(oom(5))),
        ("exited", usage(None, 0), None),
        ("exited", usage(Some(0), 0), None),
        ("spawn-failed", usage(Some(5 * M), 0), None),
        ("cancelled", usage(Some(5 * M), 0), None),
        ("timed-out", usage(Some(5 * M), 0), None),
        ("client-gone", usage(Some(5 * M), 0), None),
        ("abandoned", usage(Some(5 * M), 0), None),
        ("refused", usage(Some(5 * M), 0), None),
    ];
    for (outcome, u, want) in cases {
        assert_eq!(run_of(outcome, &u), want, "{outcome} {u:?}");
    }
}

#[test]
fn choose_table() {
    let argv = vec!["cargo".to_string(), "build".to_string()];
    let p = params(10, 90, 1.2);
    let off = LearnParams {
        enabled: false,
        ..p.clone()
    };
    let learned = Some(Learned {
        mem: 300 * M,
        runs: 7,
    });
    #[rustfmt::skip]
    let cases: Vec<ChooseCase> = vec![
        ("--mem wins", Some(2048 * M), learned, 4096 * M, &p, 2048 * M, MemSource::Requested, "--mem 2.0 GiB given"),
        ("learned", None, learned, 4096 * M, &p, 300 * M, MemSource::Learned { runs: 7 },
         "learned 300.0 MiB: p90 of peak memory over the last 7 runs of `cargo build` in /src, plus 20%"),
        ("learned, capped", None, learned, 200 * M, &p, 200 * M, MemSource::Learned { runs: 7 }, "capped at what this host can give (200.0 MiB)"),
        ("one run", None, Some(Learned { mem: 10 * M, runs: 1 }), 4096 * M, &p, 10 * M, MemSource::Learned { runs: 1 }, "over the last run of"),
        ("nothing learned", None, None, 4096 * M, &p, 256 * M, MemSource::Default,
         "default 256.0 MiB: no earlier runs of `cargo build` in /src"),
        ("learning off", None, learned, 4096 * M, &off, 256 * M, MemSource::Default, "default 256.0 MiB: learning is off"),
    ];
    for (what, requested, learned, usable, p, mem, source, why) in cases {
        let r = choose(requested, learned, 256 * M, usable, &argv, "/src", p);
        assert_eq!(r.mem, mem, "{what}");
        assert_eq!(r.source, source, "{what}");
        assert!(r.why.contains(why), "{what}: {:?} lacks {why:?}", r.why);
    }
}

#[test]
fn long_commands_are_shortened_in_the_reason() {
    let argv = vec!["x".repeat(200)];
    let r = choose(None, None, M, M, &argv, "/", &LearnParams::default());
    assert!(r.why.len() < 150, "{}", r.why);
    assert!(r.why.contains("..."), "{}", r.why);
}
