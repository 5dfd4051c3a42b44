//! `sc`, the command users type: `sc exec` here, every other verb in `scd`
//! (see the library's doc comment).

fn main() -> std::process::ExitCode {
    sidecar::cli::front::main()
}
