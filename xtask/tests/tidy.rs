//! Checks the real workspace against the layering rule.

use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn crates_depend_only_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let meta = cargo_metadata::MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .no_deps()
        .exec()
        .expect("cargo metadata");
    let ws_root = meta.workspace_root.clone();
    let names: Vec<String> = meta.workspace_packages().iter().map(|p| p.name.to_string()).collect();
    let mut graph = BTreeMap::new();
    for p in meta.workspace_packages() {
        let dir = p
            .manifest_path
            .parent()
            .and_then(|d| d.strip_prefix(&ws_root).ok())
            .map(|d| d.to_string())
            .unwrap_or_default();
        let deps = p
            .dependencies
            .iter()
            .filter(|d| d.kind == cargo_metadata::DependencyKind::Normal)
            .map(|d| d.name.clone())
            .filter(|d| names.contains(d))
            .collect();
        graph.insert(p.name.to_string(), (dir, deps));
    }
    assert!(graph.contains_key("sip-signaling"), "workspace not read: {graph:?}");
    let v = xtask::layering_violations(&graph);
    assert!(v.is_empty(), "layering violations:\n{}", v.join("\n"));
}
