//! `[resources]`: the cluster-wide resources jobs ask for with `--needs`.
//!
//! ```toml
//! [resources]
//! e2e-env = 1                                   # capacity 1, mode "available"
//! staging-db = { capacity = 1, mode = "quorum" }
//! gpu = { capacity = 4, mode = "available", prefetch = 2 }
//! ```
//!
//! This module only parses and checks the table; granting the resources is
//! the lock engine's (`crate::dlock`). A value is either a bare capacity or
//! an inline table, read by a hand-written visitor rather than an untagged
//! enum so that an unknown key in the table is still named, with its line,
//! by the toml crate (an untagged enum would only say "did not match").

use super::ClusterConfig;
use sc_protocol::resource::check_resource_name;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Largest capacity of a resource: claims are counted one by one on every
/// host, and a resource with more units than that is not scarce.
pub const CAPACITY_MAX: u32 = 1000;

/// How a resource behaves when the cluster splits (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceMode {
    /// Leases acknowledged by a quorum of the static `[cluster] members`:
    /// the minority side of a partition grants nothing. For resources whose
    /// double use does harm.
    Quorum,
    /// Each side of a partition grants up to the capacity; on heal, holders
    /// beyond it are preempted.
    Available,
}

impl ResourceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceMode::Quorum => "quorum",
            ResourceMode::Available => "available",
        }
    }
}

/// One resource of `[resources]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceConfig {
    pub name: String,
    /// Units that may be held at once, cluster-wide (1..=1000).
    pub capacity: u32,
    pub mode: ResourceMode,
    /// How many requests beyond the capacity may turn into claims early, so
    /// a hand-over does not wait for a claim round (engine default if None).
    pub prefetch: Option<u32>,
}

/// A `[resources]` value as written: `name = K` or `name = { ... }`.
#[derive(Debug, Clone)]
pub enum ResourceValue {
    Capacity(i64),
    Table(ResourceTable),
}

/// `name = { capacity = K, mode = "...", prefetch = P }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceTable {
    pub capacity: i64,
    /// "quorum" or "available" (default, as for a bare capacity).
    pub mode: Option<String>,
    pub prefetch: Option<i64>,
}

impl<'de> Deserialize<'de> for ResourceValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ResourceValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a capacity (e2e-env = 1) or a table (e2e-env = { capacity = 1, mode = \"quorum\" })",
                )
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ResourceValue, E> {
                Ok(ResourceValue::Capacity(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ResourceValue, E> {
                Ok(ResourceValue::Capacity(
                    i64::try_from(v).unwrap_or(i64::MAX),
                ))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ResourceValue, A::Error> {
                let de = serde::de::value::MapAccessDeserializer::new(map);
                ResourceTable::deserialize(de).map(ResourceValue::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// Check `[resources]` against `[cluster]`; sorted by name (the map is).
/// Errors are whole sentences starting with the section.
pub fn resolve(
    raw: &BTreeMap<String, ResourceValue>,
    cluster: Option<&ClusterConfig>,
) -> Result<Vec<ResourceConfig>, String> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let Some(cluster) = cluster else {
        return Err(
            "[resources] needs a [cluster] section: resources are shared between hosts".into(),
        );
    };
    raw.iter()
        .map(|(name, value)| {
            let r = resource(name, value).map_err(|e| format!("[resources] {name}: {e}"))?;
            if r.mode == ResourceMode::Quorum && cluster.members.is_empty() {
                return Err(format!(
                    "[resources] {name}: mode \"quorum\" needs [cluster] members, the fixed list of hosts a quorum is counted over"
                ));
            }
            Ok(r)
        })
        .collect()
}

fn resource(name: &str, value: &ResourceValue) -> Result<ResourceConfig, String> {
    check_resource_name(name)?;
    let (capacity, mode, prefetch) = match value {
        ResourceValue::Capacity(k) => (*k, None, None),
        ResourceValue::Table(t) => (t.capacity, t.mode.as_deref(), t.prefetch),
    };
    let capacity = u32::try_from(capacity)
        .ok()
        .filter(|k| (1..=CAPACITY_MAX).contains(k))
        .ok_or_else(|| format!("capacity must be from 1 to {CAPACITY_MAX}, got {capacity}"))?;
    let mode = match mode {
        None | Some("available") => ResourceMode::Available,
        Some("quorum") => ResourceMode::Quorum,
        Some(other) => {
            return Err(format!(
                "mode must be \"quorum\" or \"available\", got {other:?}"
            ));
        }
    };
    let prefetch = prefetch
        .map(|p| {
            u32::try_from(p)
                .ok()
                .filter(|p| *p <= CAPACITY_MAX)
                .ok_or_else(|| format!("prefetch must be from 0 to {CAPACITY_MAX}, got {p}"))
        })
        .transpose()?;
    Ok(ResourceConfig {
        name: name.to_string(),
        capacity,
        mode,
        prefetch,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError, Resolved};
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Resolved, ConfigError> {
        Config::parse(text, Path::new("sc.toml"))
    }

    const CLUSTER: &str = "[cluster]\nlisten = \"127.0.0.1:7946\"\nca = \"ca.crt\"\ncert = \"n.crt\"\nkey = \"n.key\"\n";

    #[test]
    fn resources_parse_sorted_with_defaults() {
        let r = parse(&format!(
            "{CLUSTER}members = [\"a\", \"b\", \"c\"]\nlease = \"2s\"\n\n[resources]\nzeta = 2\ne2e-env = {{ capacity = 1, mode = \"quorum\" }}\ngpu = {{ capacity = 4, prefetch = 2 }}\n"
        ))
        .unwrap();
        let names: Vec<&str> = r.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["e2e-env", "gpu", "zeta"]);
        assert_eq!(r.resources[0].mode, ResourceMode::Quorum);
        assert_eq!(r.resources[0].mode.as_str(), "quorum");
        assert_eq!(r.resources[1].mode, ResourceMode::Available);
        assert_eq!(r.resources[1].prefetch, Some(2));
        assert_eq!(r.resources[2].capacity, 2);
        assert_eq!(r.resources[2].mode.as_str(), "available");
        let c = r.cluster.unwrap();
        assert_eq!(c.members, ["a", "b", "c"]);
        assert_eq!(c.lease, Duration::from_secs(2));
        assert_eq!(c.available_down, Duration::from_secs(1));
        let c = parse(CLUSTER).unwrap().cluster.unwrap();
        assert_eq!(c.lease, Duration::from_secs(3));
        assert!(c.members.is_empty());
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn resource_errors_are_named() {
        let e = err("[resources]\ne2e = 1\n");
        assert!(e.contains("sc.toml") && e.contains("[cluster]"), "{e}");
        let e = err(&format!("{CLUSTER}[resources]\ne2e = 0\n"));
        assert!(
            e.contains("[resources] e2e: capacity must be from 1 to 1000"),
            "{e}"
        );
        let e = err(&format!(
            "{CLUSTER}[resources]\ne2e = {{ capacity = 1001 }}\n"
        ));
        assert!(e.contains("capacity") && e.contains("1001"), "{e}");
        let e = err(&format!(
            "{CLUSTER}[resources]\ne2e = {{ capacity = 1, mode = \"quorum\" }}\n"
        ));
        assert!(
            e.contains("[resources] e2e") && e.contains("members"),
            "{e}"
        );
        let e = err(&format!(
            "{CLUSTER}[resources]\ne2e = {{ capacity = 1, mode = \"strict\" }}\n"
        ));
        assert!(e.contains("strict"), "{e}");
        let e = err(&format!("{CLUSTER}[resources]\n\"a b\" = 1\n"));
        assert!(e.contains("invalid resource name"), "{e}");
        let e = err(&format!("{CLUSTER}[resources]\n{} = 1\n", "x".repeat(65)));
        assert!(e.contains("invalid resource name"), "{e}");
        let e = err(&format!("{CLUSTER}[resources]\ne2e = \"one\"\n"));
        assert!(e.contains("line 7") && e.contains("capacity"), "{e}");
    }

    #[test]
    fn unknown_resource_key_names_key_and_line() {
        let e = err(&format!(
            "{CLUSTER}members = [\"a\"]\n[resources]\nok = 1\ne2e = {{ capacity = 1, mdoe = \"quorum\" }}\n"
        ));
        assert!(e.contains("sc.toml") && e.contains("mdoe"), "{e}");
        assert!(e.contains("line 9"), "{e}");
    }

    /// The documented example config stays valid, and so do its commented
    /// `[cluster]` and `[resources]` blocks once uncommented.
    #[test]
    fn example_config_parses() {
        let text = include_str!("../../../configs/sidecar.toml");
        Config::parse(text, Path::new("configs/sidecar.toml")).unwrap();
        let tail = &text[text.find("# [cluster]").expect("a [cluster] example")..];
        let uncommented: String = tail
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.starts_with('[') || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' '))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let r = Config::parse(&uncommented, Path::new("example")).unwrap();
        assert_eq!(r.cluster.unwrap().members.len(), 3);
        assert_eq!(r.resources.len(), 2);
    }

    #[test]
    fn cluster_lease_bounds() {
        for (lease, ok) in [
            ("499ms", false),
            ("500ms", true),
            ("60s", true),
            ("61s", false),
        ] {
            let r = parse(&format!("{CLUSTER}lease = \"{lease}\"\n"));
            assert_eq!(r.is_ok(), ok, "{lease}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("[cluster] lease"), "{e}");
            }
        }
        let e = err(&format!("{CLUSTER}available_down = \"soon\"\n"));
        assert!(e.contains("[cluster] available_down"), "{e}");
        let e = err(&format!("{CLUSTER}members = [\"a\", \"a\"]\n"));
        assert!(
            e.contains("[cluster] members") && e.contains("twice"),
            "{e}"
        );
    }
}
