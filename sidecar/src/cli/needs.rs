//! `--needs NAME[:UNITS][,...]`: the cluster resources a job asks for, as
//! the CLI parses and shows them. The names follow the `[resources]` rules
//! (`sc_protocol::resource::check_resource_name`); whether a resource
//! exists is the daemon's to say, since only it has the config.

use sc_protocol::Need;

/// clap value parser for one `NAME[:UNITS]` item.
pub fn parse_need(s: &str) -> Result<Need, String> {
    Need::parse(s)
}

/// The `--needs` items of all occurrences, merged: a name given twice is
/// refused rather than summed, since it is more likely a slip than a wish
/// for more units.
pub fn merge_needs(items: &[Need]) -> Result<Vec<Need>, String> {
    let mut out: Vec<Need> = Vec::with_capacity(items.len());
    for need in items {
        if out.iter().any(|n| n.name == need.name) {
            return Err(format!(
                "--needs: {} is given twice (say NAME:UNITS once for several units)",
                need.name
            ));
        }
        out.push(need.clone());
    }
    Ok(out)
}

/// `e2e-env tok 7, gpu:2`: a job's needs with the fencing tokens it holds.
pub fn describe(needs: &[Need], tokens: &[(String, u64)]) -> String {
    needs
        .iter()
        .map(|n| match tokens.iter().find(|(name, _)| *name == n.name) {
            Some((_, t)) => format!("{n} tok {t}"),
            None => n.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Verb};
    use clap::Parser;

    fn needs_of(args: &[&str]) -> Result<Vec<Need>, String> {
        let mut argv = vec!["sc", "exec"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--", "true"]);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Verb::Exec(a) = cli.verb else {
            panic!("not exec")
        };
        merge_needs(&a.needs)
    }

    fn need(name: &str, units: u32) -> Need {
        Need {
            name: name.into(),
            units,
        }
    }

    #[test]
    fn needs_flags_merge() {
        assert_eq!(needs_of(&[]).unwrap(), vec![]);
        assert_eq!(
            needs_of(&["--needs", "e2e-env"]).unwrap(),
            vec![need("e2e-env", 1)]
        );
        assert_eq!(
            needs_of(&["--needs", "a,b:3", "--needs", "c.d_e:2"]).unwrap(),
            vec![need("a", 1), need("b", 3), need("c.d_e", 2)]
        );
    }

    #[test]
    fn bad_needs_are_refused() {
        for bad in ["a:0", "a:x", "", "a b", "a,,b", "é"] {
            assert!(needs_of(&["--needs", bad]).is_err(), "{bad:?} accepted");
        }
        let e = needs_of(&["--needs", "a", "--needs", "b,a:2"]).unwrap_err();
        assert!(e.contains("a is given twice"), "{e}");
        let e = needs_of(&["--needs", "gpu:0"]).unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
    }

    #[test]
    fn needs_are_described_with_tokens() {
        let needs = [need("e2e-env", 1), need("gpu", 2)];
        assert_eq!(describe(&needs, &[]), "e2e-env, gpu:2");
        assert_eq!(
            describe(&needs, &[("e2e-env".into(), 7)]),
            "e2e-env tok 7, gpu:2"
        );
    }
}
