//! `sc exec`'s arguments parsed by hand for the usual forms, before clap.
//!
//! `sc exec` starts once per job, and building clap's definition of its 17
//! flags and parsing with it cost a tenth of a millisecond or more of that
//! start here (docs/benchmarks.md). Clap stays the authority: this parser
//! accepts only forms whose meaning is plain — known long flags with a
//! value after `=` or in the next argument, then `--` or the first
//! positional starting the command — using the same value parsers, and
//! says `None` for everything else (help, short flags, repeats, unusual
//! values, any error), which clap then parses and reports exactly as
//! before. A property test checks that whatever this accepts, clap parses
//! to the same [`ExecArgs`].

use super::{ExecArgs, needs, parse_cpus, parse_duration, parse_priority, parse_size};
use std::ffi::OsString;

/// `argv` (program, `exec`, flags..., command...) as clap would parse it,
/// or `None` when clap must decide.
pub(super) fn parse(argv: &[OsString]) -> Option<ExecArgs> {
    let args: Vec<&str> = argv.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
    if args.get(1) != Some(&"exec") {
        return None;
    }
    let mut out = Parsed::default();
    let mut i = 2;
    while i < args.len() {
        let arg = args[i];
        if arg == "--" {
            return out.finish(&args[i + 1..]);
        }
        let Some(flag) = arg.strip_prefix("--") else {
            if arg.starts_with('-') {
                return None;
            }
            return out.finish(&args[i..]);
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, None),
        };
        if matches!(name, "json" | "no-preempt" | "explain") {
            if inline.is_some() {
                return None;
            }
            out.switch(name)?;
            i += 1;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                *args.get(i)?
            }
        };
        // Clap's own rules for empty and dash-led values are its to apply.
        if value.is_empty() || value.starts_with('-') {
            return None;
        }
        out.value(name, value)?;
        i += 1;
    }
    None
}

/// What has been parsed so far; `None` fields were not given.
#[derive(Default)]
struct Parsed {
    args: Option<ExecArgs>,
    priority_given: bool,
}

impl Parsed {
    fn get(&mut self) -> &mut ExecArgs {
        self.args.get_or_insert_with(|| ExecArgs {
            mem: None,
            mem_limit: None,
            mem_high: None,
            cpus: None,
            pids: None,
            priority: sc_protocol::PRIORITY_NORMAL,
            name: None,
            timeout: None,
            wait_for: Vec::new(),
            wait_timeout: None,
            needs: Vec::new(),
            ports: Vec::new(),
            json: false,
            no_preempt: false,
            explain: false,
            command: Vec::new(),
        })
    }

    /// A flag without a value; a repeat is clap's to judge.
    fn switch(&mut self, name: &str) -> Option<()> {
        let a = self.get();
        let slot = match name {
            "json" => &mut a.json,
            "no-preempt" => &mut a.no_preempt,
            _ => &mut a.explain,
        };
        if *slot {
            return None;
        }
        *slot = true;
        Some(())
    }

    /// A flag with its value; unknown flags, repeats of single-valued ones
    /// and values their parser refuses are clap's to report.
    fn value(&mut self, name: &str, value: &str) -> Option<()> {
        fn once<T>(slot: &mut Option<T>, v: Option<T>) -> Option<()> {
            if slot.is_some() {
                return None;
            }
            *slot = Some(v?);
            Some(())
        }
        if name == "priority" {
            if self.priority_given {
                return None;
            }
            self.priority_given = true;
            self.get().priority = parse_priority(value).ok()?;
            return Some(());
        }
        let a = self.get();
        match name {
            "mem" => once(&mut a.mem, parse_size(value).ok()),
            "mem-limit" => once(&mut a.mem_limit, parse_size(value).ok()),
            "mem-high" => once(&mut a.mem_high, parse_size(value).ok()),
            "cpus" => once(&mut a.cpus, parse_cpus(value).ok()),
            "pids" => once(
                &mut a.pids,
                value
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| value.parse().ok())
                    .flatten(),
            ),
            "name" => once(&mut a.name, Some(value.to_string())),
            "timeout" => once(&mut a.timeout, parse_duration(value).ok()),
            "wait-timeout" => once(&mut a.wait_timeout, parse_duration(value).ok()),
            "wait-for" => {
                for item in value.split(',') {
                    if item.is_empty() {
                        return None;
                    }
                    a.wait_for.push(item.to_string());
                }
                Some(())
            }
            "needs" => {
                for item in value.split(',') {
                    if item.is_empty() {
                        return None;
                    }
                    a.needs.push(needs::parse_need(item).ok()?);
                }
                Some(())
            }
            "port" => {
                a.ports.push(value.to_string());
                Some(())
            }
            _ => None,
        }
    }

    fn finish(mut self, command: &[&str]) -> Option<ExecArgs> {
        if command.is_empty() {
            return None;
        }
        self.get();
        let mut args = self.args.take()?;
        args.command = command.iter().map(|s| s.to_string()).collect();
        Some(args)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Verb};
    use super::*;
    use clap::Parser;
    use proptest::prelude::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn clap_parse(argv: &[OsString]) -> Result<ExecArgs, String> {
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                verb: Verb::Exec(a),
            }) => Ok(a),
            Ok(_) => Err("not exec".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn the_usual_forms_take_the_fast_path() {
        for argv in [
            vec!["sc", "exec", "--", "true"],
            vec!["sc", "exec", "true"],
            vec![
                "sc", "exec", "--mem", "2G", "--cpus", "1.5", "--", "make", "-j4",
            ],
            vec![
                "sc",
                "exec",
                "--mem=512M",
                "--needs",
                "e2e:2,gpu",
                "--json",
                "pnpm",
                "test",
            ],
            vec![
                "sc",
                "exec",
                "--priority",
                "high",
                "--timeout",
                "90s",
                "--wait-for",
                "web,db",
                "--port",
                "http",
                "--",
                "x",
            ],
            vec![
                "sc",
                "exec",
                "--name",
                "build",
                "--pids",
                "100",
                "--no-preempt",
                "--explain",
                "--",
                "make",
            ],
        ] {
            let fast = parse(&os(&argv)).unwrap_or_else(|| panic!("slow path for {argv:?}"));
            let full = clap_parse(&os(&argv)).expect("clap parses it");
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{argv:?}");
        }
    }

    #[test]
    fn unusual_forms_are_left_to_clap() {
        for argv in [
            vec!["sc", "exec"],
            vec!["sc", "exec", "--"],
            vec!["sc", "exec", "--help"],
            vec!["sc", "exec", "-h"],
            vec!["sc", "exec", "--mem", "lots", "--", "true"],
            vec!["sc", "exec", "--mem", "1G", "--mem", "2G", "true"],
            vec!["sc", "exec", "--json", "--json", "true"],
            vec!["sc", "exec", "--json=yes", "true"],
            vec!["sc", "exec", "--no-such-flag", "true"],
            vec!["sc", "exec", "--priority", "-5", "true"],
            vec!["sc", "exec", "--name", "", "true"],
            vec!["sc", "exec", "--needs", "a,,b", "true"],
            vec!["sc", "exec", "--mem"],
            vec!["sc", "ps"],
        ] {
            assert!(parse(&os(&argv)).is_none(), "{argv:?}");
        }
    }

    /// Arguments drawn from the flags' own names and from values each
    /// parser accepts or refuses, in any order and number.
    fn arg() -> impl Strategy<Value = String> {
        let flags = prop::sample::select(vec![
            "--mem",
            "--mem-limit",
            "--mem-high",
            "--cpus",
            "--pids",
            "--priority",
            "--name",
            "--timeout",
            "--wait-for",
            "--wait-timeout",
            "--needs",
            "--port",
            "--json",
            "--no-preempt",
            "--explain",
            "--help",
            "--version",
            "--bogus",
            "--",
            "-h",
            "-",
        ]);
        let values = prop::sample::select(vec![
            "1G", "512M", "1.5GiB", "0", "lots", "2", "1.5", "-1", "+5", "007", "high", "low",
            "normal", "2000", "-3", "90s", "5m", "x", "a,b", "a,", "e2e:2", "gpu:0", "a:b", "true",
            "make", "", "=", "--json", "é", "a b",
        ]);
        prop_oneof![
            flags.clone().prop_map(str::to_string),
            values.clone().prop_map(str::to_string),
            (flags, values).prop_map(|(f, v)| format!("{f}={v}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn whatever_the_fast_path_accepts_clap_parses_the_same(
            rest in prop::collection::vec(arg(), 0..8)
        ) {
            let mut argv = os(&["sc", "exec"]);
            argv.extend(rest.iter().map(OsString::from));
            if let Some(fast) = parse(&argv) {
                let full = clap_parse(&argv);
                prop_assert!(full.is_ok(), "fast path accepted {:?}, clap refused: {:?}", rest, full);
                prop_assert_eq!(format!("{:?}", fast), format!("{:?}", full.unwrap()), "{:?}", rest);
            }
        }
    }
}
