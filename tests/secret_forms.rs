//! `masgen::rules::secrets::FILE_FORMS` (which key a program reads a
//! secret from, and from which file key) against the programs themselves:
//! Synapse's installed sources and MAS's config schema. The literal-secret
//! help and the refusal of ignored file keys are only as right as this table.

mod support;

/// The Synapse rows of `masgen::rules::secrets::FILE_FORMS` against the
/// installed Synapse's own sources (1.163.2, and 1.135.2 for the rows that
/// say so): a file form is a key the cited file reads; a secret without one
/// is read there and has no `<secret>_path` / `<secret>_file` in the file.
#[test]
fn synapse_secret_file_forms_match_synapse_sources() {
    use masgen::rules::secrets::{Consumer, FILE_FORMS};
    let package_dir = |py: std::path::PathBuf| {
        let out = std::process::Command::new(py)
            .args([
                "-c",
                "import synapse, os; print(os.path.dirname(synapse.__file__))",
            ])
            .output()
            .expect("run python");
        std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    };
    let Some(new) = support::synapse_python().map(package_dir) else {
        return;
    };
    let Some(old) = support::old_synapse_python().map(package_dir) else {
        return;
    };
    let mut failures = Vec::new();
    for f in FILE_FORMS
        .iter()
        .filter(|f| f.consumer == Consumer::Synapse)
    {
        let file = f.source.split_whitespace().next().unwrap();
        let root = if f.source.contains("(1.135.2)") {
            &old
        } else {
            &new
        };
        // A module Synapse hands a block to (ldap3) sits beside the package.
        let path = match file.strip_prefix("synapse/") {
            Some(rel) => root.join(rel),
            None => root.parent().expect("site-packages").join(file),
        };
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let quoted =
            |k: &str| text.contains(&format!("\"{k}\"")) || text.contains(&format!("'{k}'"));
        match f.file {
            Some(key) if !quoted(key) => failures.push(format!("{file} does not read `{key}`")),
            None if !quoted(f.secret) && f.table != "database.args" => {
                failures.push(format!("{file} does not read `{}`", f.secret))
            }
            None => {
                for form in [format!("{}_path", f.secret), format!("{}_file", f.secret)] {
                    if quoted(&form) {
                        failures.push(format!(
                            "{file} reads `{form}`, a file form the table lacks"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The MAS rows of `FILE_FORMS` against MAS's config schema (v1.22.0,
/// `docs/config.schema.json`): both keys of a file form exist at that place,
/// and a secret without one has no `<secret>_file` there.
#[test]
fn mas_secret_file_forms_match_the_mas_schema() {
    use masgen::rules::secrets::{Consumer, FILE_FORMS};
    use serde_json::Value;
    let path = support::shared_dir().join("schemas/mas-config.schema.json");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    // The schemas a node stands for: itself, its `$ref`, and the members of
    // its `allOf`/`anyOf`/`oneOf`.
    fn expand<'a>(root: &'a Value, node: &'a Value, out: &mut Vec<&'a Value>) {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            let name = r.rsplit('/').next().unwrap();
            expand(root, &root["definitions"][name], out);
        }
        for k in ["allOf", "anyOf", "oneOf"] {
            for m in node.get(k).and_then(Value::as_array).into_iter().flatten() {
                expand(root, m, out);
            }
        }
        out.push(node);
    }
    let children = |nodes: &[&Value], part: &str| -> Vec<Value> {
        let mut found = Vec::new();
        for n in nodes {
            let mut all = Vec::new();
            expand(&schema, n, &mut all);
            for s in all {
                let next = match part {
                    "[]" => s.get("items"),
                    name => s.get("properties").and_then(|p| p.get(name)),
                };
                found.extend(next.cloned());
            }
        }
        found
    };
    let has = |nodes: &[Value], key: &str| {
        let refs: Vec<&Value> = nodes.iter().collect();
        !children(&refs, key).is_empty()
    };
    let mut failures = Vec::new();
    for f in FILE_FORMS.iter().filter(|f| f.consumer == Consumer::Mas) {
        let mut nodes = vec![schema.clone()];
        for part in f.table.split('.').flat_map(|p| match p.strip_suffix("[]") {
            Some(name) => vec![name, "[]"],
            None => vec![p],
        }) {
            let refs: Vec<&Value> = nodes.iter().collect();
            nodes = children(&refs, part);
        }
        if nodes.is_empty() {
            failures.push(format!("no `{}` in the MAS schema", f.table));
            continue;
        }
        if !has(&nodes, f.secret) {
            failures.push(format!("no `{}.{}` in the MAS schema", f.table, f.secret));
        }
        match f.file {
            Some(file) if !has(&nodes, file) => {
                failures.push(format!("no `{}.{file}` in the MAS schema", f.table))
            }
            None if has(&nodes, &format!("{}_file", f.secret)) => failures.push(format!(
                "the MAS schema has `{}.{}_file`, which the table lacks",
                f.table, f.secret
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `SYNAPSE_FILE_KEYS`: each name is read by Synapse's config code (quoted
/// in `synapse/config/*.py` of 1.163.2, or of 1.135.2 for MSC3861).
#[test]
fn synapse_file_key_names_are_read_by_synapse() {
    let Some(new) = support::synapse_python().map(synapse_config_dir) else {
        return;
    };
    let Some(old) = support::old_synapse_python().map(synapse_config_dir) else {
        return;
    };
    let mut texts = String::new();
    for dir in [new, old] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "py") {
                texts.push_str(&std::fs::read_to_string(p).unwrap());
            }
        }
    }
    let unread: Vec<_> = masgen::rules::secrets::SYNAPSE_FILE_KEYS
        .iter()
        .filter(|k| !texts.contains(&format!("\"{k}\"")) && !texts.contains(&format!("'{k}'")))
        .collect();
    assert!(unread.is_empty(), "Synapse does not read {unread:?}");
}

fn synapse_config_dir(py: std::path::PathBuf) -> std::path::PathBuf {
    let out = std::process::Command::new(py)
        .args([
            "-c",
            "import synapse, os; print(os.path.dirname(synapse.__file__))",
        ])
        .output()
        .expect("run python");
    std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("config")
}

/// `MAS_FILE_KEYS` is exactly the set of `*_file`/`*_path` properties of
/// MAS's config schema.
#[test]
fn mas_file_key_names_are_the_schema_s() {
    let path = support::shared_dir().join("schemas/mas-config.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    fn walk(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Object(props)) = m.get("properties") {
                    out.extend(
                        props
                            .keys()
                            .filter(|k| k.ends_with("_file") || k.ends_with("_path"))
                            .cloned(),
                    );
                }
                m.values().for_each(|c| walk(c, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut in_schema = std::collections::BTreeSet::new();
    walk(&schema, &mut in_schema);
    let listed: std::collections::BTreeSet<String> = masgen::rules::secrets::MAS_FILE_KEYS
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(listed, in_schema);
}
