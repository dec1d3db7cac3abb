//! Repository checks run as tests (`cargo test -p xtask`).
//!
//! The layering rule of `docs/ARCHITECTURE.md`: a crate may depend only on
//! crates that come *before* it in [`LAYERS`].

use std::collections::BTreeMap;

/// The workspace crates from the bottom of the stack to the top.
pub const LAYERS: &[&str] = &[
    "dtmf-rfc4733",
    "sdp-negotiation",
    "srtp-transport",
    "sip-signaling",
    "media-mixer",
    "session",
    "callbacks",
    "rest-api",
    "bridge",
    "gateway",
];

/// Every violation of the layering in a dependency graph given as
/// `crate -> its workspace dependencies`. Crates outside [`LAYERS`] that
/// live under `crates/` or `bins/` are violations too (they must be placed).
pub fn layering_violations(graph: &BTreeMap<String, (String, Vec<String>)>) -> Vec<String> {
    let rank = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut out = Vec::new();
    for (name, (dir, deps)) in graph {
        let Some(r) = rank(name) else {
            if dir.starts_with("crates/") || dir.starts_with("bins/") {
                out.push(format!("{name} ({dir}) is not placed in xtask::LAYERS"));
            }
            continue;
        };
        for d in deps {
            match rank(d) {
                Some(dr) if dr >= r => out.push(format!("{name} depends on {d}, which is not below it")),
                None if graph.get(d).is_some_and(|(dd, _)| !dd.starts_with("crates/")) => {
                    out.push(format!("{name} depends on {d}, which is not a library crate"))
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(entries: &[(&str, &str, &[&str])]) -> BTreeMap<String, (String, Vec<String>)> {
        entries
            .iter()
            .map(|(n, d, deps)| (n.to_string(), (d.to_string(), deps.iter().map(|s| s.to_string()).collect())))
            .collect()
    }

    #[test]
    fn detects_upward_dependency() {
        let graph = g(&[
            ("sip-signaling", "crates/sip-signaling", &["bridge"]),
            ("bridge", "crates/bridge", &["sip-signaling"]),
        ]);
        let v = layering_violations(&graph);
        assert_eq!(v, vec!["sip-signaling depends on bridge, which is not below it".to_string()]);
    }

    #[test]
    fn detects_unplaced_crate_and_example_dependency() {
        let graph = g(&[
            ("newcrate", "crates/newcrate", &[]),
            ("bridge", "crates/bridge", &["sip-call"]),
            ("sip-call", "examples/sip-call", &[]),
        ]);
        let v = layering_violations(&graph);
        assert_eq!(v.len(), 2, "{v:?}");
    }
}
