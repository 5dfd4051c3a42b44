//! Cluster-wide resources on the local API: what a job needs
//! (`sc exec --needs NAME[:UNITS]`), who holds a resource it waits for, and a
//! resource's state in `sc status`; also the job environment that carries
//! fencing tokens.
//!
//! Pure data and text: the lock engine that grants resources lives in the
//! daemon (`sidecar/src/dlock`), the board's view of them in [`crate::board`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest resource name (config key and `--needs` alike).
pub const RESOURCE_NAME_MAX: usize = 64;

/// Comma-separated names of the resources a job holds, in grant order.
pub const ENV_RESOURCE: &str = "SC_RESOURCE";
/// The job's fencing tokens, comma-separated in the order of [`ENV_RESOURCE`];
/// also one `SC_FENCE_TOKEN_<NAME>` per resource (see [`fence_token_var`]).
pub const ENV_FENCE_TOKEN: &str = "SC_FENCE_TOKEN";

/// One cluster resource a job needs (`--needs NAME[:UNITS]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    pub name: String,
    /// How much of the resource's capacity the job takes (default 1).
    pub units: u32,
}

impl Need {
    /// Parse `NAME` or `NAME:UNITS` (units ≥ 1, default 1).
    pub fn parse(s: &str) -> Result<Need, String> {
        let (name, units) = match s.split_once(':') {
            Some((name, units)) => {
                let units = units.trim().parse::<u32>().ok().filter(|u| *u >= 1).ok_or_else(
                    || format!("invalid units {units:?} in {s:?}: expected a whole number of at least 1"),
                )?;
                (name, units)
            }
            None => (s, 1),
        };
        let name = name.trim();
        check_resource_name(name)?;
        Ok(Need {
            name: name.to_string(),
            units,
        })
    }
}

impl fmt::Display for Need {
    /// `NAME` for one unit, `NAME:UNITS` otherwise (what `--needs` takes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.units == 1 {
            f.write_str(&self.name)
        } else {
            write!(f, "{}:{}", self.name, self.units)
        }
    }
}

/// Resource names are config keys, board text and part of an environment
/// variable name: 1-64 of `A-Z a-z 0-9 . _ -`.
pub fn check_resource_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= RESOURCE_NAME_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid resource name {name:?}: use 1-{RESOURCE_NAME_MAX} letters, digits, '.', '_' or '-'"
        ))
    }
}

/// `SC_FENCE_TOKEN_<NAME>`: the name upper-cased, anything not alphanumeric
/// as `_` (`e2e-env` → `SC_FENCE_TOKEN_E2E_ENV`).
pub fn fence_token_var(name: &str) -> String {
    let mut var = format!("{ENV_FENCE_TOKEN}_");
    var.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    var
}

/// The fencing tokens a job's environment carries, by resource, in the
/// order of [`ENV_RESOURCE`]. The per-resource variable wins over the list
/// (it cannot be misaligned); a resource with no readable token is left out.
pub fn fence_tokens_of_env(env: &[(String, String)]) -> Vec<(String, u64)> {
    let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let Some(names) = get(ENV_RESOURCE) else {
        return Vec::new();
    };
    let listed: Vec<&str> = get(ENV_FENCE_TOKEN)
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .enumerate()
        .filter_map(|(i, name)| {
            let token = get(&fence_token_var(name))
                .or_else(|| listed.get(i).copied())
                .and_then(|t| t.trim().parse::<u64>().ok())?;
            Some((name.to_string(), token))
        })
        .collect()
}

/// A job that holds a resource another job waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceHolder {
    pub host: String,
    pub job: u64,
    /// The job's name or command line, cut short.
    pub summary: Option<String>,
    /// How long it has held the resource.
    pub held_ms: Option<u64>,
}

impl fmt::Display for ResourceHolder {
    /// `host-b job 42 (pnpm test:e2e, 3m12s)`; absent parts are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} job {}", self.host, self.job)?;
        let held = self.held_ms.map(crate::units::format_duration_ms);
        let parts: Vec<&str> = [self.summary.as_deref(), held.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// The text of `WaitReason::Resource` (see its examples).
pub(crate) fn fmt_resource_wait(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    holders: &[ResourceHolder],
    ahead: u32,
    detail: Option<&str>,
) -> fmt::Result {
    let ahead_text = match ahead {
        1 => "1 ahead of you".to_string(),
        n => format!("{n} ahead of you"),
    };
    if !holders.is_empty() {
        let held: Vec<String> = holders.iter().map(ToString::to_string).collect();
        write!(f, "{name} held by {}", held.join(", "))?;
        if ahead > 0 {
            write!(f, "; {ahead_text}")?;
        }
        return Ok(());
    }
    match (detail, ahead) {
        (Some(d), 0) => write!(f, "{name}: {d}"),
        (Some(d), _) => write!(f, "{name}: {d}; {ahead_text}"),
        (None, 0) => write!(f, "{name}: waiting for the cluster"),
        (None, _) => write!(f, "{name}: {ahead_text}"),
    }
}

/// A cluster resource as this host sees it, in `sc status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStatus {
    pub name: String,
    pub capacity: u32,
    /// "quorum" or "available".
    pub mode: String,
    /// Claims holding it now, cluster-wide.
    pub holders: u32,
    /// Requests and claims waiting for it.
    pub queued: u32,
    /// Hosts disagree about it (different capacity or mode, or more holders
    /// than capacity after a partition healed): what is wrong, in words.
    pub conflict: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WaitReason;

    fn holder(host: &str, job: u64, summary: Option<&str>, held_ms: Option<u64>) -> ResourceHolder {
        ResourceHolder {
            host: host.into(),
            job,
            summary: summary.map(Into::into),
            held_ms,
        }
    }

    fn wait(holders: Vec<ResourceHolder>, ahead: u32, detail: Option<&str>) -> String {
        WaitReason::Resource {
            name: "e2e-env".into(),
            holders,
            ahead,
            detail: detail.map(Into::into),
        }
        .to_string()
    }

    #[test]
    fn resource_wait_reasons_read_as_sentences() {
        let b = holder("host-b", 42, Some("pnpm test:e2e"), Some(192_000));
        assert_eq!(
            wait(vec![b.clone()], 2, None),
            "e2e-env held by host-b job 42 (pnpm test:e2e, 3m12s); 2 ahead of you"
        );
        assert_eq!(
            wait(vec![b.clone()], 0, Some("ignored beside holders")),
            "e2e-env held by host-b job 42 (pnpm test:e2e, 3m12s)"
        );
        let c = holder("host-c", 7, None, Some(45_000));
        let d = holder("host-d", 8, Some("make"), None);
        let e = holder("host-e", 9, None, None);
        assert_eq!(
            wait(vec![b, c, d, e], 1, None),
            "e2e-env held by host-b job 42 (pnpm test:e2e, 3m12s), host-c job 7 (45s), \
             host-d job 8 (make), host-e job 9; 1 ahead of you"
        );
        assert_eq!(wait(vec![], 0, Some("no quorum")), "e2e-env: no quorum");
        assert_eq!(
            wait(vec![], 3, Some("no quorum")),
            "e2e-env: no quorum; 3 ahead of you"
        );
        assert_eq!(wait(vec![], 1, None), "e2e-env: 1 ahead of you");
        assert_eq!(wait(vec![], 0, None), "e2e-env: waiting for the cluster");
    }

    #[test]
    fn needs_parse() {
        assert_eq!(
            Need::parse("e2e-env").unwrap(),
            Need {
                name: "e2e-env".into(),
                units: 1
            }
        );
        assert_eq!(Need::parse("gpu:2").unwrap().units, 2);
        assert_eq!(
            Need::parse("a.b_C-9:1000").unwrap().to_string(),
            "a.b_C-9:1000"
        );
        for bad in [
            "", ":2", "gpu:0", "gpu:-1", "gpu:x", "gpu:", "a b", "é", "x:1:2",
        ] {
            assert!(Need::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Need::parse(&"x".repeat(64)).is_ok());
        assert!(Need::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn fence_tokens_come_from_the_environment() {
        assert_eq!(fence_token_var("e2e-env"), "SC_FENCE_TOKEN_E2E_ENV");
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = env(&[("SC_RESOURCE", "a,b-c"), ("SC_FENCE_TOKEN", "12,7")]);
        assert_eq!(
            fence_tokens_of_env(&e),
            vec![("a".to_string(), 12), ("b-c".to_string(), 7)]
        );
        let e = env(&[
            ("SC_RESOURCE", "a,b-c"),
            ("SC_FENCE_TOKEN", "12"),
            ("SC_FENCE_TOKEN_B_C", "9"),
        ]);
        assert_eq!(
            fence_tokens_of_env(&e),
            vec![("a".to_string(), 12), ("b-c".to_string(), 9)]
        );
        assert!(fence_tokens_of_env(&env(&[("SC_FENCE_TOKEN", "3")])).is_empty());
        assert!(
            fence_tokens_of_env(&env(&[("SC_RESOURCE", "a"), ("SC_FENCE_TOKEN", "x")])).is_empty()
        );
    }
}
