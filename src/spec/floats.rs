//! TOML has `nan` and `inf`; Nix, JSON and so the generated configs have no
//! such values. Left alone, serde_json turns them into `null` (or drops
//! them) without a word, so they are refused where the spec is read.

use toml_edit::Value;

use crate::diag::{Diagnostic, KeyPath};

/// Reports `value` (found at `path`) when it is, or its arrays hold, a NaN
/// or an infinity. Inline tables are left to the caller's walk, which
/// visits their keys itself.
pub(super) fn check_finite(path: &KeyPath, value: &Value, diags: &mut Vec<Diagnostic>) {
    match value {
        Value::Float(f) if !f.value().is_finite() => {
            let name = path.to_string();
            diags.push(
                Diagnostic::error(
                    "value.non_finite",
                    path.clone(),
                    format!(
                        "`{name}` is `{}`, which the generated Nix and JSON cannot hold",
                        f.display_repr()
                    ),
                )
                .help("write a finite number, or leave the setting out"),
            );
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_finite(&path.index(i), item, diags);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::{load, Source};

    /// Each non-finite float is refused at its own line and column, inside
    /// arrays and inline tables too (a key's position, an array element's
    /// own); finite ones (and -0.0) pass.
    #[test]
    fn nan_and_infinities_are_refused_where_they_are() {
        let text = "[synapse.extra_settings]\na = nan\nb = [1.0, [-inf]]\nc = { d = +inf, e = -0.0 }\nf = 1e300\n";
        let src = Source::new("f.toml", text);
        let diags = match load(&src) {
            Ok(_) => vec![],
            Err(d) => d,
        };
        let found: Vec<(String, (usize, usize))> = diags
            .iter()
            .filter(|d| d.code == "value.non_finite")
            .map(|d| {
                let span = src.span_of(match &d.location {
                    crate::diag::Location::Path(p) => p,
                    other => panic!("{other:?}"),
                });
                (d.message.clone(), src.line_col(span.start))
            })
            .collect();
        assert_eq!(
            found,
            [
                (
                    "`synapse.extra_settings.a` is `nan`, which the generated Nix and JSON cannot hold".to_string(),
                    (2, 1)
                ),
                (
                    "`synapse.extra_settings.b[1][0]` is `-inf`, which the generated Nix and JSON cannot hold".to_string(),
                    (3, 12)
                ),
                (
                    "`synapse.extra_settings.c.d` is `inf`, which the generated Nix and JSON cannot hold".to_string(),
                    (4, 7)
                ),
            ]
        );
    }
}
