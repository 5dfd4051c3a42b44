//! The operations keys: `[metrics] listen` (the Prometheus endpoint) and
//! `[daemon] cgroup_leaf` (whether the daemon moves itself into a leaf of
//! its own, delegated cgroup v2 group, as under systemd `Delegate=yes`).

use serde::Deserialize;

/// `[metrics]`: the Prometheus text endpoint. Absent: no endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// TCP address to serve `GET /metrics` on, e.g. "127.0.0.1:9464".
    pub listen: Option<String>,
}

/// `[daemon] cgroup_leaf`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupLeaf {
    /// Move when started by systemd (`$INVOCATION_ID` set) into a cgroup
    /// v2 group named `*.service`: the unit's own, delegated with
    /// `Delegate=yes` as `configs/sc.service` does.
    #[default]
    Auto,
    /// Always move (the own v2 group is delegated some other way).
    Always,
    /// Never: the own group is someone else's (a login session, a unit
    /// without `Delegate=yes`).
    Never,
}

/// `[metrics] listen` parsed.
pub fn metrics_listen(m: &MetricsSection) -> Result<Option<std::net::SocketAddr>, String> {
    m.listen
        .as_deref()
        .map(|v| {
            v.parse()
                .map_err(|_| format!("{v:?} is not an IP:PORT address"))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::CgroupLeaf;
    use std::path::Path;

    #[test]
    fn metrics_and_cgroup_leaf_parse_with_defaults() {
        let r = Config::parse("", Path::new("sc.toml")).expect("empty config");
        assert_eq!(r.metrics_listen, None);
        assert_eq!(r.cgroup_leaf, CgroupLeaf::Auto);
        let r = Config::parse(
            "[daemon]\ncgroup_leaf = \"never\"\n[metrics]\nlisten = \"127.0.0.1:9464\"\n",
            Path::new("sc.toml"),
        )
        .expect("valid config");
        assert_eq!(
            r.metrics_listen,
            Some("127.0.0.1:9464".parse().expect("addr"))
        );
        assert_eq!(r.cgroup_leaf, CgroupLeaf::Never);
    }

    #[test]
    fn bad_metrics_keys_are_named() {
        let err = Config::parse("[metrics]\nlisten = \"localhost\"\n", Path::new("sc.toml"))
            .expect_err("not an address")
            .to_string();
        assert!(err.contains("[metrics] listen"), "{err}");
        let err = Config::parse("[metrics]\nport = 1\n", Path::new("sc.toml"))
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("port") && err.contains("line 2"), "{err}");
        let err = Config::parse("[daemon]\ncgroup_leaf = \"maybe\"\n", Path::new("sc.toml"))
            .expect_err("unknown variant")
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
