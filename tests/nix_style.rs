//! The Nix masgen writes reads like hand-written Nix: every `.nix` file of
//! every example's output tree, masgen's own `modules/**/*.nix` and the root
//! `flake.nix` are fixed points of alejandra (the crate, used here only as
//! the oracle; masgen's own printer in `src/nix` writes the text).
//!
//! `MASGEN_NIX_STYLE_WRITE=1` rewrites the repository's own files (never the
//! generated ones: those change through the printer) with alejandra's output,
//! the way `INSTA_UPDATE=always` updates snapshots; read the diff before
//! committing it.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use similar::TextDiff;

/// alejandra's output for `text`, or its parse error.
fn alejandra(name: &str, text: &str) -> Result<String, String> {
    match alejandra::format::in_memory(name.to_string(), text.to_string()) {
        (alejandra::format::Status::Error(e), _) => Err(e),
        (alejandra::format::Status::Changed(_), after) => Ok(after),
    }
}

/// Empty when `text` is alejandra-formatted, else a unified diff to it.
fn style_diff(name: &str, text: &str) -> Option<String> {
    match alejandra(name, text) {
        Err(e) => Some(format!("{name}: alejandra cannot parse it: {e}\n")),
        Ok(after) if after == text => None,
        Ok(after) => Some(format!(
            "{}",
            TextDiff::from_lines(text, &after)
                .unified_diff()
                .context_radius(2)
                .header(name, &format!("{name} (alejandra)"))
        )),
    }
}

fn assert_no_diffs(what: &str, diffs: Vec<String>) {
    assert!(
        diffs.is_empty(),
        "{} {what} file(s) are not alejandra-formatted:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn generated_nix_is_alejandra_formatted() {
    let mut diffs = Vec::new();
    let mut count = 0;
    for (name, checked) in support::checked_examples() {
        let (_, tree) =
            masgen::build_tree(&checked).unwrap_or_else(|e| panic!("build_tree({name}): {e:#}"));
        for (path, text) in &tree {
            if path.extension() == Some("nix") {
                count += 1;
                diffs.extend(style_diff(&format!("{name}: {path}"), text));
            }
        }
    }
    // flake.nix, hosts/*/*/*.nix and masgen/modules/*.nix of each example.
    assert!(count >= 4 * 3, "only {count} .nix files were generated");
    assert_no_diffs("generated", diffs);
}

#[test]
fn repository_nix_is_alejandra_formatted() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("read modules/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "nix") {
                out.push(path);
            }
        }
    }
    let root = support::repo_root();
    let mut files = Vec::new();
    walk(&root.join("modules"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no modules/**/*.nix");
    files.push(root.join("flake.nix"));
    let write = std::env::var_os("MASGEN_NIX_STYLE_WRITE").is_some();
    let mut diffs = Vec::new();
    for file in files {
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        let text = fs::read_to_string(&file).expect("read .nix file");
        let Some(diff) = style_diff(&name, &text) else {
            continue;
        };
        match alejandra(&name, &text) {
            Ok(after) if write => fs::write(&file, after).expect("write .nix file"),
            _ => diffs.push(diff),
        }
    }
    assert_no_diffs("repository", diffs);
}

#[test]
fn the_oracle_can_fail() {
    // A file alejandra would change must be reported, with a diff.
    let diff = style_diff("x.nix", "{a=1;}\n").expect("unformatted text passes");
    assert!(diff.contains("+{a = 1;}"), "{diff}");
    assert_eq!(style_diff("x.nix", "{a = 1;}\n"), None);
}

/// Every shape the printer has, alone and nested, at top level and inside a
/// binding and a list (the examples do not use them all).
#[test]
fn printer_shapes_are_alejandra_formatted() {
    use masgen::nix::{print, NixExpr};
    let concat = || {
        NixExpr::Concat(
            Box::new(NixExpr::Raw("./.")),
            Box::new(NixExpr::str("/hosts/a")),
        )
    };
    let call = |arg: NixExpr| NixExpr::Call("import", Box::new(arg));
    let lambda = |body: NixExpr| NixExpr::Lambda("{...}", Box::new(body));
    let tall = NixExpr::Lambda(
        "{\n  self,\n  nixpkgs,\n  ...\n} @ inputs",
        Box::new(NixExpr::Null),
    );
    let shapes = vec![
        NixExpr::Int(-1),
        NixExpr::Int(i64::MIN),
        NixExpr::Float(-0.0),
        NixExpr::Float(2.5),
        concat(),
        call(concat()),
        call(NixExpr::Int(-2)),
        call(call(NixExpr::Raw("./x.nix"))),
        NixExpr::Import("./tasks.nix"),
        NixExpr::Raw("./."),
        NixExpr::Raw("lib.mkDefault 1"),
        NixExpr::Select(vec!["inputs".into(), "host-a".into(), "m.x".into()]),
        lambda(NixExpr::attrs([("a", NixExpr::Int(1))])),
        lambda(NixExpr::List(vec![NixExpr::Int(-1)])),
        lambda(NixExpr::Null),
        lambda(NixExpr::Int(-1)),
        lambda(NixExpr::str("s")),
        lambda(concat()),
        lambda(call(NixExpr::attrs([("a", NixExpr::Bool(true))]))),
        lambda(lambda(NixExpr::Attrs(Default::default()))),
        tall.clone(),
        NixExpr::Lambda(
            "{\n  self,\n  nixpkgs,\n  ...\n} @ inputs",
            Box::new(NixExpr::attrs([("x", NixExpr::List(vec![]))])),
        ),
        NixExpr::Call(
            "nixpkgs.lib.nixosSystem",
            Box::new(NixExpr::attrs([("modules", NixExpr::List(vec![concat()]))])),
        ),
    ];
    let mut diffs = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let contexts = [
            shape.clone(),
            NixExpr::attrs([("v", shape.clone()), ("w", NixExpr::Int(0))]),
            NixExpr::List(vec![shape.clone(), NixExpr::Int(1)]),
            NixExpr::attrs([("l", NixExpr::List(vec![shape.clone()]))]),
        ];
        for (j, expr) in contexts.iter().enumerate() {
            let text = format!("{}\n", print(expr));
            diffs.extend(style_diff(&format!("shape {i} in context {j}"), &text));
        }
    }
    assert_no_diffs("printed", diffs);
}
