//! `sc completions SHELL` and `sc man`: shell completion scripts and the
//! man page, generated from the clap definition so they never drift from
//! the real flags.

use super::Cli;
use anyhow::{Context, Result};
use clap::{CommandFactory, ValueEnum};
use std::io::Write;

/// The shells `sc completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionShell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// The completion script for `shell`, as bytes.
pub fn completion_script(shell: CompletionShell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell.generator(), &mut cmd, "sc", &mut out);
    out
}

/// The man page (roff): `sc(1)` with every visible subcommand and its flags.
pub fn man_page() -> Result<Vec<u8>> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    // clap_mangen lists subcommands by name only; each gets its own section
    // here so one page documents every verb's flags.
    man.render_subcommands_section(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_subcommand(&mut out, sub, "sc")?;
    }
    man.render_version_section(&mut out)?;
    Ok(out)
}

fn render_subcommand(out: &mut Vec<u8>, sub: &clap::Command, parent: &str) -> Result<()> {
    let path = format!("{parent} {}", sub.get_name());
    writeln!(out, ".SH \"{}\"", path.to_uppercase())?;
    let sub = sub.clone().bin_name(&path).display_name(&path);
    let man = clap_mangen::Man::new(sub.clone());
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if sub.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(out)?;
    }
    for s in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_subcommand(out, s, &path)?;
    }
    Ok(())
}

pub fn completions(shell: CompletionShell) -> Result<()> {
    std::io::stdout()
        .lock()
        .write_all(&completion_script(shell))
        .context("writing the completion script")
}

pub fn man() -> Result<()> {
    std::io::stdout()
        .lock()
        .write_all(&man_page()?)
        .context("writing the man page")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_verbs() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let s = String::from_utf8(completion_script(shell)).expect("utf-8");
            for verb in ["exec", "ps", "drain", "undrain", "service"] {
                assert!(s.contains(verb), "{shell:?} script lacks {verb}");
            }
        }
    }

    #[test]
    fn man_page_has_a_title_and_the_verbs() {
        let s = String::from_utf8(man_page().expect("render")).expect("utf-8");
        assert!(s.contains(".TH sc 1"), "{}", &s[..200.min(s.len())]);
        for verb in ["SC EXEC", "SC DRAIN", "SC SERVICE ADD", "\\-\\-port"] {
            assert!(s.contains(verb), "man page lacks {verb}");
        }
    }
}
