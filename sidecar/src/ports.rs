//! Port leases (`sc exec --port NAME`, service `ports`): the pure parts —
//! the configured range, port-name rules, the choice of a free port, and
//! the environment a holder gets. The daemon owns the live lease set (it is
//! derived from its job and service tables) and the bind test.

use std::fmt;

/// The env var every holder gets: its first port.
pub const ENV_PORT: &str = "PORT";
/// The name of that first port.
pub const ENV_PORT_NAME: &str = "SC_PORT_NAME";

/// Longest port name accepted.
const NAME_MAX: usize = 32;

/// An inclusive range of TCP ports leases are taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            first: 20000,
            last: 29999,
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    /// `FIRST-LAST`, both in 1024..=65535, FIRST ≤ LAST.
    fn from_str(s: &str) -> Result<PortRange, String> {
        let bad = || format!("invalid port range {s:?}: expected FIRST-LAST such as 20000-29999");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first < 1024 {
            return Err(format!(
                "invalid port range {s:?}: ports below 1024 are privileged"
            ));
        }
        if first > last {
            return Err(format!("invalid port range {s:?}: {first} is above {last}"));
        }
        Ok(PortRange { first, last })
    }
}

impl PortRange {
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }
}

/// A port name must make a readable env var (`SC_PORT_<NAME>`): letters,
/// digits, `_` and `-`, starting with a letter, at most 32 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_start = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok_start || !ok_chars || name.len() > NAME_MAX {
        return Err(format!(
            "invalid port name {name:?}: use letters, digits, '_' and '-', starting with a letter, at most {NAME_MAX} characters"
        ));
    }
    Ok(())
}

/// Check a whole list: each name valid, none twice (case-insensitively,
/// since they share one env var).
pub fn check_names(names: &[String]) -> Result<(), String> {
    for (i, n) in names.iter().enumerate() {
        check_name(n)?;
        if names[..i].iter().any(|m| var_of(m) == var_of(n)) {
            return Err(format!("port name {n:?} is given twice"));
        }
    }
    Ok(())
}

/// `SC_PORT_<NAME>`: upper case, `-` as `_`.
pub fn var_of(name: &str) -> String {
    format!("SC_PORT_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// The environment of a holder of `ports` (in the order asked): `PORT` and
/// `SC_PORT_NAME` for the first, `SC_PORT_<NAME>` for each.
pub fn env_of(ports: &[(String, u16)]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some((name, port)) = ports.first() {
        env.push((ENV_PORT.to_string(), port.to_string()));
        env.push((ENV_PORT_NAME.to_string(), name.clone()));
    }
    for (name, port) in ports {
        env.push((var_of(name), port.to_string()));
    }
    env
}

/// The first port from `start` on (wrapping round the range) that is not
/// `leased` and that `is_free` accepts; `None` if the whole range is taken.
/// Starting after the last port handed out, rather than at the bottom,
/// keeps a port just released (its server's sockets may linger in
/// TIME_WAIT, its old client may still be reconnecting) out of use as long
/// as the range allows.
pub fn choose(
    range: PortRange,
    start: u16,
    leased: &dyn Fn(u16) -> bool,
    is_free: &mut dyn FnMut(u16) -> bool,
) -> Option<u16> {
    let start = if (range.first..=range.last).contains(&start) {
        start
    } else {
        range.first
    };
    let n = range.len();
    let offset = u32::from(start - range.first);
    (0..n)
        .map(|i| (range.first as u32 + (offset + i) % n) as u16)
        .find(|&p| !leased(p) && is_free(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    #[test]
    fn choose_table() {
        /// (range, start, leased, busy, expected)
        type Case = (PortRange, u16, &'static [u16], &'static [u16], Option<u16>);
        let cases: &[Case] = &[
            (r(20000, 20002), 20000, &[], &[], Some(20000)),
            (r(20000, 20002), 20001, &[], &[], Some(20001)),
            (r(20000, 20002), 20000, &[20000], &[], Some(20001)),
            (r(20000, 20002), 20000, &[20000], &[20001], Some(20002)),
            // wraps round past the end
            (r(20000, 20002), 20002, &[20002], &[], Some(20000)),
            // a start outside the range begins at its first port
            (r(20000, 20002), 9, &[], &[], Some(20000)),
            (r(20000, 20002), 20000, &[20000, 20002], &[20001], None),
            (r(20000, 20000), 20000, &[], &[], Some(20000)),
            (r(20000, 20000), 20000, &[], &[20000], None),
            (r(65535, 65535), 65535, &[], &[], Some(65535)),
        ];
        for (range, start, leased, busy, want) in cases {
            let got = choose(*range, *start, &|p| leased.contains(&p), &mut |p| {
                !busy.contains(&p)
            });
            assert_eq!(
                got, *want,
                "{range} from {start}, leased {leased:?}, busy {busy:?}"
            );
        }
    }

    #[test]
    fn range_parses() {
        assert_eq!("20000-29999".parse(), Ok(r(20000, 29999)));
        assert_eq!(" 3000 - 3000 ".parse(), Ok(r(3000, 3000)));
        for bad in ["", "20000", "a-b", "30000-20000", "80-90", "1-70000"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_and_env() {
        assert!(check_names(&["web".into(), "api-2".into(), "db_x".into()]).is_ok());
        for bad in ["", "2web", "we b", "web$", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_names(&["web".into(), "WEB".into()]).is_err());
        assert!(check_names(&["a-b".into(), "a_b".into()]).is_err());
        assert_eq!(
            env_of(&[("web".into(), 20001), ("api-2".into(), 20002)]),
            vec![
                ("PORT".to_string(), "20001".to_string()),
                ("SC_PORT_NAME".to_string(), "web".to_string()),
                ("SC_PORT_WEB".to_string(), "20001".to_string()),
                ("SC_PORT_API_2".to_string(), "20002".to_string()),
            ]
        );
        assert!(env_of(&[]).is_empty());
    }
}
