//! Reads the Nix files masgen writes back into data: attribute sets, lists,
//! strings, numbers, booleans, `null`, a `{ ... }:` module header and
//! `import ./file.nix` of a sibling file in the same tree, and the
//! arithmetic the printer writes for numbers without a literal (`-`, `*`).
//! Anything else (interpolation, `let`, other operators) means the file was
//! not written by masgen, and is an error.

use camino::{Utf8Path, Utf8PathBuf};
use rnix::ast::{self, BinOpKind, HasEntry, InterpolPart, LiteralKind, UnaryOpKind};
use serde_json::{Map, Number, Value};

use crate::emit::OutputTree;

/// Evaluates the masgen-written Nix file `path` of `tree` to JSON data.
pub fn read(tree: &OutputTree, path: &Utf8Path) -> Result<Value, String> {
    read_depth(tree, path, 0)
}

fn read_depth(tree: &OutputTree, path: &Utf8Path, depth: usize) -> Result<Value, String> {
    if depth > 8 {
        return Err(format!("{path}: imports nest too deeply"));
    }
    let text = tree
        .get(path)
        .ok_or_else(|| format!("{path} is not in the tree"))?;
    let parse = rnix::Root::parse(text);
    if let Some(e) = parse.errors().first() {
        return Err(format!("{path} does not parse as Nix: {e}"));
    }
    let expr = parse
        .tree()
        .expr()
        .ok_or_else(|| format!("{path} is empty"))?;
    let reader = Reader {
        tree,
        dir: path.parent().unwrap_or(Utf8Path::new("")),
        file: path,
        depth,
    };
    reader.value(&expr)
}

struct Reader<'a> {
    tree: &'a OutputTree,
    dir: &'a Utf8Path,
    file: &'a Utf8Path,
    depth: usize,
}

impl Reader<'_> {
    fn err(&self, what: impl std::fmt::Display) -> String {
        format!("{}: {what} is not masgen data", self.file)
    }

    fn value(&self, expr: &ast::Expr) -> Result<Value, String> {
        match expr {
            ast::Expr::Lambda(l) => {
                let body = l
                    .body()
                    .ok_or_else(|| self.err("a function without body"))?;
                self.value(&body)
            }
            ast::Expr::Paren(p) => {
                let inner = p.expr().ok_or_else(|| self.err("`()`"))?;
                self.value(&inner)
            }
            ast::Expr::AttrSet(set) => {
                if set.rec_token().is_some() {
                    return Err(self.err("`rec { … }`"));
                }
                let mut map = Map::new();
                for entry in set.entries() {
                    let ast::Entry::AttrpathValue(av) = entry else {
                        return Err(self.err("`inherit`"));
                    };
                    let keys = av
                        .attrpath()
                        .ok_or_else(|| self.err("a binding without name"))?
                        .attrs()
                        .map(|a| self.attr_name(&a))
                        .collect::<Result<Vec<_>, _>>()?;
                    let value = self.value(&av.value().ok_or_else(|| self.err("`x = ;`"))?)?;
                    insert_path(&mut map, &keys, value).map_err(|k| self.err(k))?;
                }
                Ok(Value::Object(map))
            }
            ast::Expr::List(list) => list
                .items()
                .map(|i| self.value(&i))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            ast::Expr::Str(s) => self.string(s).map(Value::String),
            ast::Expr::Literal(lit) => match lit.kind() {
                LiteralKind::Integer(i) => i
                    .value()
                    .map(|n| Value::Number(n.into()))
                    .map_err(|e| self.err(e)),
                LiteralKind::Float(f) => f
                    .value()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| self.err("a float")),
                LiteralKind::Uri(u) => Err(self.err(format!("the URI {u}"))),
            },
            ast::Expr::Ident(id) => match id.to_string().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                "null" => Ok(Value::Null),
                other => Err(self.err(format!("the variable `{other}`"))),
            },
            // Nix reads `-x` as `0 - x`.
            ast::Expr::UnaryOp(op) if op.operator() == Some(UnaryOpKind::Negate) => {
                let inner = op.expr().ok_or_else(|| self.err("`-`"))?;
                let x = self.value(&inner)?;
                arith(BinOpKind::Sub, &Value::from(0), &x).ok_or_else(|| self.err("`-` of this"))
            }
            // `(-9223372036854775807 - 1)`, `(0.0 * -1.0)`, subnormals.
            ast::Expr::BinOp(op) => {
                let side = |e: Option<ast::Expr>| {
                    e.ok_or_else(|| self.err("an operator"))
                        .and_then(|e| self.value(&e))
                };
                let (a, b) = (side(op.lhs())?, side(op.rhs())?);
                op.operator()
                    .and_then(|kind| arith(kind, &a, &b))
                    .ok_or_else(|| self.err(format!("`{op}`")))
            }
            ast::Expr::Apply(app) => {
                let is_import = matches!(app.lambda(), Some(ast::Expr::Ident(id)) if id.to_string() == "import");
                let Some(ast::Expr::Path(path)) = app.argument() else {
                    return Err(self.err("a function call"));
                };
                if !is_import {
                    return Err(self.err("a function call"));
                }
                let rel = path.to_string();
                // Only files under the importing file's directory: a
                // configuration's data is then its directory's files alone
                // (the diff relies on it to skip equal directories).
                let Some(rel) = rel
                    .strip_prefix("./")
                    .filter(|r| !r.split('/').any(|c| c == ".."))
                else {
                    return Err(self.err(format!("`import {rel}`")));
                };
                let target = normalize(&self.dir.join(rel));
                read_depth(self.tree, &target, self.depth + 1)
            }
            other => Err(self.err(format!("`{other}`"))),
        }
    }

    fn attr_name(&self, attr: &ast::Attr) -> Result<String, String> {
        match attr {
            ast::Attr::Ident(id) => Ok(id.to_string()),
            ast::Attr::Str(s) => self.string(s),
            ast::Attr::Dynamic(_) => Err(self.err("a `${…}` attribute name")),
        }
    }

    fn string(&self, s: &ast::Str) -> Result<String, String> {
        let mut out = String::new();
        for part in s.normalized_parts() {
            match part {
                InterpolPart::Literal(text) => out.push_str(&text),
                InterpolPart::Interpolation(_) => return Err(self.err("`${…}` in a string")),
            }
        }
        Ok(out)
    }
}

fn insert_path(map: &mut Map<String, Value>, keys: &[String], value: Value) -> Result<(), String> {
    match keys {
        [] => Err("an empty attribute path".into()),
        [last] => {
            if map.contains_key(last) {
                return Err(format!("`{last}` defined twice"));
            }
            map.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let child = map
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            match child {
                Value::Object(m) => insert_path(m, rest, value),
                _ => Err(format!("`{first}` defined twice")),
            }
        }
    }
}

/// `a/b/../c` → `a/c`, `a/./b` → `a/b` (paths stay inside the tree).
fn normalize(path: &Utf8Path) -> Utf8PathBuf {
    let mut out = Utf8PathBuf::new();
    for c in path.components() {
        match c {
            camino::Utf8Component::CurDir => {}
            camino::Utf8Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_str()),
        }
    }
    out
}

/// Nix's `-` and `*` on numbers: integers stay integers (overflow is an
/// error in Nix too), anything with a float is IEEE double arithmetic.
fn arith(kind: BinOpKind, a: &Value, b: &Value) -> Option<Value> {
    let (Value::Number(a), Value::Number(b)) = (a, b) else {
        return None;
    };
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        let n = match kind {
            BinOpKind::Sub => a.checked_sub(b)?,
            BinOpKind::Mul => a.checked_mul(b)?,
            _ => return None,
        };
        return Some(Value::from(n));
    }
    let (a, b) = (a.as_f64()?, b.as_f64()?);
    let f = match kind {
        BinOpKind::Sub => a - b,
        BinOpKind::Mul => a * b,
        _ => return None,
    };
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nix::{print, NixExpr};
    use serde_json::json;

    #[test]
    fn reads_back_what_the_printer_writes() {
        let data = json!({
            "m.homeserver": {"base_url": "https://x/${not}"},
            "list": [1, -2, 2.5, null, true, "a\"b\\c\nd"],
            "edges": [i64::MIN, i64::MAX, -0.0, 5e-324, -5e-324, 1e300, -2.5e-300],
            "empty": {}, "none": [],
        });
        let mut tree = OutputTree::new();
        tree.insert(
            "h/data.nix".into(),
            format!("# header\n{}\n", print(&NixExpr::from_json(&data))),
        );
        tree.insert(
            "h/default.nix".into(),
            "{ ... }:\n{\n  a.b = import ./data.nix;\n}\n".into(),
        );
        let v = read(&tree, Utf8Path::new("h/default.nix")).unwrap();
        assert_eq!(v, json!({"a": {"b": data}}));
        // `==` on JSON numbers takes -0.0 for 0.0: compare the sign too.
        let zero = v["a"]["b"]["edges"][2].as_f64().unwrap();
        assert!(zero == 0.0 && zero.is_sign_negative(), "{zero}");
    }

    #[test]
    fn refuses_code() {
        let mut tree = OutputTree::new();
        tree.insert("x.nix".into(), "{ a = b; }".into());
        assert!(read(&tree, Utf8Path::new("x.nix"))
            .unwrap_err()
            .contains("variable `b`"));
        tree.insert("y.nix".into(), "{ a = 1 + 2; }".into());
        assert!(read(&tree, Utf8Path::new("y.nix"))
            .unwrap_err()
            .contains("`1 + 2` is not masgen data"));
    }

    /// A configuration's data is its directory's files: an import climbing
    /// out of it is refused, one into a subdirectory is read.
    #[test]
    fn imports_stay_under_the_importing_directory() {
        let mut tree = OutputTree::new();
        tree.insert("shared.nix".into(), "1".into());
        tree.insert("h/sub/x.nix".into(), "2".into());
        for (file, text) in [
            ("h/up.nix", "import ./../shared.nix"),
            ("h/round.nix", "import ./sub/../../shared.nix"),
        ] {
            tree.insert(file.into(), text.into());
            let err = read(&tree, Utf8Path::new(file)).unwrap_err();
            assert!(err.contains("is not masgen data"), "{file}: {err}");
        }
        tree.insert("h/down.nix".into(), "import ./sub/x.nix".into());
        assert_eq!(read(&tree, Utf8Path::new("h/down.nix")).unwrap(), json!(2));
    }
}
