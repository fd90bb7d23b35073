//! masgen's split-host modules (docs/notes.md "Split hosts: database
//! passwords and firewall") inside whole NixOS configurations, evaluated by
//! tests/nixos/split-hosts.nix with each nixpkgs tree's own modules
//! (postgresql, the iptables and nftables firewalls, matrix-synapse, MAS)
//! and the stand-in packages of tests/nixos/pkgs.nix. A missing tree is a
//! loud SKIP. The modules alone: tests/split_hosts_modules.rs; their programs for
//! real: tests/split_hosts_postgres.rs.

mod support;

use serde_json::json;

use masgen::lower::tasks::{
    MAS_DATABASE_PATH, MAS_DATABASE_UNIT, POSTGRES_PASSWORDS_UNIT, SYNAPSE_DATABASE_PATH,
    SYNAPSE_DATABASE_UNIT,
};
use support::nix_instantiate;

/// The modules inside whole NixOS configurations, with each nixpkgs tree's
/// own modules (postgresql, firewall, nftables, matrix-synapse, MAS) and
/// the stand-in packages of tests/nixos/pkgs.nix: no failed assertion, the
/// system's derivation evaluates (every option value it is built from is
/// forced), and what nixpkgs makes of masgen's definitions is read back.
#[test]
fn split_host_modules_evaluate_with_nixpkgs() {
    if nix_instantiate().is_none() {
        return;
    }
    for tree in support::nixos::trees("tests/split_hosts_nixpkgs.rs") {
        let what = |role: &str| format!("{role} host on the {} tree", tree.label);
        for nftables in [false, true] {
            let (v, _) = support::nixos::evaluate_split_host(&tree.path, "db", nftables)
                .unwrap_or_else(|e| panic!("{}: {e}", what("db")));
            assert_eq!(v["failedAssertions"], json!([]), "{}", what("db"));
            assert!(v["toplevel"].is_string(), "{}", what("db"));
            assert_eq!(v["enableTCPIP"], true);
            // After nixpkgs' header, before its defaults (mkAfter).
            assert_eq!(v["listenAddresses"], "localhost,10.0.0.1", "{}", what("db"));
            let hba = v["authentication"].as_str().unwrap();
            let ours = hba
                .find("host matrix-synapse matrix-synapse 10.0.0.2/32 scram-sha-256\nhost matrix-authentication-service matrix-authentication-service fd00::3/128 scram-sha-256\n")
                .unwrap_or_else(|| panic!("{hba}"));
            let defaults = hba.find("local all all").unwrap_or_else(|| panic!("{hba}"));
            assert!(ours < defaults, "{hba}");
            let rules = if nftables {
                assert!(!v["extraCommands"]
                    .as_str()
                    .unwrap()
                    .contains("nixos-fw -p tcp -s"));
                v["extraInputRules"].as_str().unwrap().to_owned()
            } else {
                assert_eq!(v["extraInputRules"], "");
                v["extraCommands"].as_str().unwrap().to_owned()
            };
            let expected = if nftables {
                "ip saddr 10.0.0.2 tcp dport 5432 accept\nip6 saddr fd00::3 tcp dport 5432 accept\n"
            } else {
                "iptables -A nixos-fw -p tcp -s 10.0.0.2 --dport 5432 -j nixos-fw-accept\nip6tables -A nixos-fw -p tcp -s fd00::3 --dport 5432 -j nixos-fw-accept\n"
            };
            assert!(rules.contains(expected), "{rules}");
            let unit = v["units"][POSTGRES_PASSWORDS_UNIT].as_str().unwrap();
            for line in [
                "After=postgresql.service postgresql-setup.service",
                "Requires=postgresql.service",
                "User=postgres",
                "LoadCredential=password-0:/run/secrets/synapse-db",
                "LoadCredential=password-1:/run/secrets/mas-db",
                "\"matrix-synapse\" \"password-0\" \"matrix-authentication-service\" \"password-1\"",
            ] {
                assert!(unit.contains(line), "{}: {line}\n{unit}", what("db"));
            }
            assert_eq!(
                v["wantedBy"][POSTGRES_PASSWORDS_UNIT],
                json!(["multi-user.target"])
            );
        }

        // The MAS host: MAS, Synapse's settings without Synapse, a syn2mas task.
        let (v, files) = support::nixos::evaluate_split_host(&tree.path, "mas", false)
            .unwrap_or_else(|e| panic!("{}: {e}", what("mas")));
        assert_eq!(v["failedAssertions"], json!([]), "{}", what("mas"));
        assert!(v["toplevel"].is_string(), "{}", what("mas"));
        assert_eq!(v["masExtraConfigFiles"], json!([MAS_DATABASE_PATH]));
        assert_eq!(v["synapseExtraConfigFiles"], json!([SYNAPSE_DATABASE_PATH]));
        assert_eq!(
            v["requiredBy"][MAS_DATABASE_UNIT],
            json!(["matrix-authentication-service.service"])
        );
        assert_eq!(v["requiredBy"][SYNAPSE_DATABASE_UNIT], json!([]));
        let task = v["units"]["masgen-syn2mas-check.service"].as_str().unwrap();
        for line in [
            format!("After={SYNAPSE_DATABASE_UNIT} {MAS_DATABASE_UNIT}"),
            format!("Requires={SYNAPSE_DATABASE_UNIT} {MAS_DATABASE_UNIT}"),
            format!("LoadCredential=masgen-synapse-config-0:{SYNAPSE_DATABASE_PATH}"),
            format!("LoadCredential=masgen-mas-extra-config-0:{MAS_DATABASE_PATH}"),
        ] {
            assert!(task.contains(&line), "{}: {line}\n{task}", what("mas"));
        }
        assert!(v["units"][SYNAPSE_DATABASE_UNIT]
            .as_str()
            .unwrap()
            .contains("User=root"));
        // The YAML @synapse-config-args@ names without Synapse: its
        // settings, nulls pruned, without log_config.
        let hs = files
            .values()
            .find(|f| f.name == "homeserver.yaml")
            .and_then(|f| f.value.clone())
            .unwrap_or_else(|| panic!("{}: no homeserver.yaml", what("mas")));
        assert_eq!(hs["server_name"], "example.org");
        assert_eq!(hs["database"]["args"]["host"], "10.0.0.1");
        assert!(hs.get("log_config").is_none(), "{hs}");
        assert!(!hs.to_string().contains("null"), "{hs}");
        // The database settings the writers start from.
        let settings = |name: &str| {
            files
                .values()
                .find(|f| f.name == name)
                .and_then(|f| f.value.clone())
                .unwrap_or_else(|| panic!("{}: no {name}", what("mas")))
        };
        assert_eq!(
            settings("masgen-mas-database-settings.json")["uri"],
            "postgresql://matrix-authentication-service@10.0.0.1:5432/matrix-authentication-service?sslmode=disable"
        );
        assert_eq!(
            settings("masgen-synapse-database-settings.json")["args"]["port"],
            5432
        );

        // Synapse's host: the file before Synapse.
        let (v, _) = support::nixos::evaluate_split_host(&tree.path, "synapse", false)
            .unwrap_or_else(|e| panic!("{}: {e}", what("synapse")));
        assert_eq!(v["failedAssertions"], json!([]), "{}", what("synapse"));
        assert!(v["toplevel"].is_string());
        assert_eq!(
            v["requiredBy"][SYNAPSE_DATABASE_UNIT],
            json!(["matrix-synapse.service"])
        );
        let unit = v["units"][SYNAPSE_DATABASE_UNIT].as_str().unwrap();
        assert!(
            unit.contains("Before=matrix-synapse.service") && unit.contains("User=matrix-synapse"),
            "{unit}"
        );
    }
}
