//! Bundles `modules/` into the binary, so `masgen build` can copy the NixOS
//! modules it ships into every output tree.

use std::{env, fs, path::Path};

fn collect(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect(&path, root, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("modules");
    println!("cargo:rerun-if-changed=modules");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    let mut code = String::from("/// `modules/` as shipped: (path relative to modules/, contents).\npub const MODULE_FILES: &[(&str, &str)] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed=modules/{f}");
        code.push_str(&format!("    ({f:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/modules/\", {f:?}))),\n"));
    }
    code.push_str("];\n");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("modules_bundle.rs");
    fs::write(out, code).unwrap();
}
