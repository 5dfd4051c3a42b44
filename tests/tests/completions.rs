//! `sc completions bash|zsh|fish` and `sc man`: generated from the CLI
//! definition, non-empty, naming the verbs, and syntactically valid where
//! a checker is installed (`bash -n`, `zsh -n`, `fish -n`, `groff`/`man`).

use sc_tests::*;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn sc(args: &[&str]) -> RunOutput {
    let mut c = Command::new(sc_bin());
    c.args(args);
    run(c, T)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn completion_scripts_name_the_verbs_and_parse() {
    let dir = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        let out = sc(&["completions", shell]);
        out.assert_success();
        let script = out.stdout_str();
        for verb in ["exec", "ps", "drain", "undrain", "service", "completions"] {
            assert!(script.contains(verb), "{shell} script lacks {verb}");
        }
        let port_flag = if shell == "fish" { "-l port" } else { "--port" };
        assert!(script.contains(port_flag), "{shell} script lacks --port");
        let path = dir.path().join(format!("sc.{shell}"));
        std::fs::write(&path, &script).expect("write script");
        if have(shell) {
            let mut c = Command::new(shell);
            c.arg("-n").arg(&path);
            let check = run(c, T);
            assert_eq!(
                check.code(),
                Some(0),
                "{shell} -n rejects the script\n{check}"
            );
        } else {
            eprintln!("{shell} not installed: syntax not checked");
        }
    }
    // bash: loading it registers the completion function for sc.
    let mut c = Command::new("bash");
    c.arg("-c").arg(format!(
        "source {} && complete -p sc",
        dir.path().join("sc.bash").display()
    ));
    let reg = run(c, T);
    reg.assert_success();
    assert!(reg.stdout_str().contains("sc"), "{reg}");
}

#[test]
fn unknown_shell_is_refused_naming_the_choices() {
    let out = sc(&["completions", "tcsh"]);
    assert_eq!(out.code(), Some(125), "{out}");
    let err = out.stderr_str();
    assert!(err.contains("tcsh") && err.contains("bash"), "{out}");
}

#[test]
fn man_page_documents_every_verb() {
    let out = sc(&["man"]);
    out.assert_success();
    let page = out.stdout_str();
    assert!(page.contains(".TH sc 1"), "no .TH header");
    for section in [
        "SC EXEC",
        "SC DRAIN",
        "SC UNDRAIN",
        "SC STATUS",
        "SC SERVICE ADD",
    ] {
        assert!(page.contains(section), "man page lacks {section}");
    }
    assert!(page.contains("\\-\\-port"), "man page lacks --port");
    assert!(
        !page.contains("bench\\-gossip"),
        "a hidden verb is documented"
    );
    if have("groff") {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sc.1");
        std::fs::write(&path, &page).expect("write page");
        let mut c = Command::new("groff");
        c.args(["-man", "-Tutf8", "-ww", "-z"]).arg(&path);
        let render = run(c, T);
        assert_eq!(render.code(), Some(0), "groff rejects the page\n{render}");
        assert!(
            render.stderr_str().trim().is_empty(),
            "groff warns about the page\n{render}"
        );
    } else {
        eprintln!("groff not installed: rendering not checked");
    }
}
