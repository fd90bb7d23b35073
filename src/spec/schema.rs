//! The spec's JSON Schema (`masgen schema`, docs/masgen-spec.schema.json),
//! generated from the serde types in [`super::raw`] so that it cannot drift
//! from what the loader reads. Editors read it through taplo's `#:schema`
//! directive (Even Better TOML).
//!
//! Draft 7, because taplo's validator and most editors support it; no `null`
//! in optional keys, since TOML has no null.

use schemars::generate::SchemaSettings;
use schemars::{json_schema, Schema, SchemaGenerator};

use serde_json::Value;

use super::raw::SpecFile;

/// Where the repository keeps the generated schema; the examples point at it.
pub const COMMITTED_PATH: &str = "docs/masgen-spec.schema.json";

/// The schema as pretty-printed JSON, ending in a newline.
pub fn json_schema() -> String {
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<SpecFile>().to_value();
    drop_null(&mut schema);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is JSON");
    text.push('\n');
    text
}

/// schemars lets an `Option` be `null`; TOML has none, and an editor
/// should not offer it. Removes `null` from every `type` list and `anyOf`,
/// and `default: null`.
fn drop_null(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(any)) = map.get_mut("anyOf") {
                any.retain(|s| s.get("type") != Some(&Value::from("null")));
                if any.len() == 1 {
                    let Some(Value::Object(only)) = map.remove("anyOf").map(|mut a| a[0].take())
                    else {
                        unreachable!("one schema left")
                    };
                    map.extend(only);
                }
            }
            map.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// Escape hatches (`extra_settings`, provider `extra`, module `config`):
/// any table, checked by masgen for literal secrets only.
pub(super) fn free_table(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object" })
}

/// `[mas.account]`: MAS's own booleans, the keys the model knows.
pub(super) fn account(_: &mut SchemaGenerator) -> Schema {
    let properties: serde_json::Map<String, Value> = super::raw::MAS_ACCOUNT_KEYS
        .iter()
        .map(|k| (k.to_string(), serde_json::json!({ "type": "boolean" })))
        .collect();
    json_schema!({
        "description": "MAS `account` options (booleans).",
        "type": "object",
        "properties": properties,
        "additionalProperties": false
    })
}

/// A TCP port, as the model checks it (1..=65535).
pub(super) fn port(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "minimum": 1, "maximum": 65535 })
}

/// Synapse's `password_config.enabled`: a boolean or `"only_for_reauth"`.
pub(super) fn password_login(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "`true`, `false` or `\"only_for_reauth\"` (Synapse's `password_config.enabled`).",
        "anyOf": [{ "type": "boolean" }, { "const": "only_for_reauth" }]
    })
}

/// `synapse.ldap`: `true` (the plugin only) or matrix-synapse-ldap3's settings.
pub(super) fn ldap(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "`true` (install the LDAP plugin only) or matrix-synapse-ldap3's settings.",
        "anyOf": [{ "type": "boolean" }, { "type": "object" }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed schema (what editors and the examples read) is the one
    /// generated from the loader's types, byte for byte; and it offers no
    /// `null` anywhere (TOML has none).
    #[test]
    fn the_committed_schema_is_the_generated_one() {
        let path = format!("{}/{COMMITTED_PATH}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read_to_string(path).unwrap();
        let generated = json_schema();
        assert!(
            committed == generated,
            "{COMMITTED_PATH} is stale: run `masgen schema > {COMMITTED_PATH}`"
        );
        assert!(!generated.contains("\"null\""), "a null type is offered");
        assert!(!generated.contains("\"default\": null"), "a null default");
    }
}
