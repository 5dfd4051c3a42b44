//! The `sc` executable's entry: `sc exec` (and the `sc stop-guard` it may
//! start) run here; every other verb is handed to `scd` by exec'ing it in
//! place — same pid, same arguments, same terminal — so that `sc` links
//! only the exec path (see the library's doc comment for why).

use super::{EXIT_SC_ERROR, exec, guard, parse_exec_only, print_parse_error};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// The full executable's file name, installed next to `sc`.
pub const FULL_EXE: &str = "scd";

pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    match parse_exec_only(&args) {
        Some(Ok(exec_args)) => return exec::main(exec_args),
        Some(Err(e)) => return print_parse_error(&e),
        None => {}
    }
    if args.get(1).is_some_and(|verb| verb == "stop-guard") {
        return stop_guard(&args);
    }
    forward(&args)
}

/// `sc stop-guard`, the exec'd form of `sc exec`'s second stopper.
fn stop_guard(args: &[OsString]) -> ExitCode {
    use clap::{Args, FromArgMatches};
    let cmd = clap::Command::new("sc").subcommand(guard::GuardArgs::augment_args(
        clap::Command::new("stop-guard"),
    ));
    let parsed = cmd
        .try_get_matches_from(args)
        .and_then(|m| match m.subcommand() {
            Some(("stop-guard", sub)) => guard::GuardArgs::from_arg_matches(sub),
            _ => Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand)),
        });
    match parsed {
        Ok(a) => ExitCode::from(guard::main(a)),
        Err(e) => print_parse_error(&e),
    }
}

/// Replace this process with `scd` and the same arguments; returns only if
/// that failed.
fn forward(args: &[OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let exe = match full_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sc: {e}");
            return ExitCode::from(EXIT_SC_ERROR);
        }
    };
    let mut cmd = std::process::Command::new(&exe);
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    let err = cmd.args(args.iter().skip(1)).exec();
    eprintln!("sc: cannot run {}: {err}", exe.display());
    ExitCode::from(EXIT_SC_ERROR)
}

/// Where `scd` is: next to the running executable (both are built and
/// installed together), else the first `scd` on `PATH`.
pub fn full_exe() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find the sc executable: {e}"))?;
    if me.file_name().is_some_and(|n| n == FULL_EXE) {
        return Ok(me);
    }
    let sibling = me.with_file_name(FULL_EXE);
    if sibling.is_file() {
        return Ok(sibling);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(FULL_EXE))
        .find(|p| p.is_file());
    on_path.ok_or_else(|| {
        format!(
            "{FULL_EXE} (the sc daemon and the verbs other than exec) is neither next to {} nor on PATH; \
             build both executables (`cargo build --release -p sidecar`) and install them together",
            me.display()
        )
    })
}
