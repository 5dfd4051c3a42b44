//! `scd`: the sidecar daemon (`scd daemon`) and every CLI verb; `sc` hands
//! it all verbs but `exec` (see the library's doc comment).

fn main() -> std::process::ExitCode {
    sidecar::cli::main()
}
