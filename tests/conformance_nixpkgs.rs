//! Conformance of what nixpkgs would deploy: every example × every
//! configuration its flake defines × every nixpkgs tree present is evaluated
//! with nixpkgs' own NixOS modules (tests/support/nixos.rs), and the files
//! nixpkgs generates are handed to the real consumers:
//! * nixpkgs' nginx.conf: `nginx -t` as deployed (ports 80/443, TLS), and the
//!   routing assertions of tests/conformance_nginx.rs on loopback;
//! * nixpkgs' unit texts: `systemd-analyze verify`;
//! * nixpkgs' homeserver.yaml (+ the extra config files its unit passes):
//!   Synapse's config loader;
//! * nixpkgs' MAS config.yaml: MAS's JSON schema.
//!
//! Each test says what it substitutes, and why, where it does it. A missing
//! nixpkgs tree is a loud SKIP (trees are fetched, not installed); a
//! configuration that does not evaluate is a loud SKIP here, because
//! tests/nixos_eval.rs asserts (or, on the old tree for examples it does not
//! expect to evaluate there, reports) it.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use masgen::lower::tasks::PASSWORD_CONFIG_UNIT;
use masgen::lower::{HostPhase, PasswordConfigOut, TlsMode, PASSWORD_CONFIG_PATH};
use masgen::model::Homeserver;
use support::compare::*;
use support::nixos::{self, NixosEval};
use support::routing::*;
use support::synapse::{write_config, PgTarget};
use support::*;

/// One configuration as masgen lowers it and as nixpkgs evaluates it.
pub struct Evaluated {
    /// "<example> × <configuration> × <tree> tree", for messages.
    pub what: String,
    pub hs: Homeserver,
    pub phase: HostPhase,
    /// `render/<host>/<phase>/…` of the output tree, by path under that dir.
    pub render: BTreeMap<String, String>,
    pub eval: NixosEval,
}

/// Every evaluated configuration, computed once per test binary. Empty
/// (after a loud SKIP) when no nixpkgs tree or no nix-instantiate is there.
fn evaluated() -> &'static [Evaluated] {
    static CACHE: OnceLock<Vec<Evaluated>> = OnceLock::new();
    CACHE.get_or_init(|| {
        let trees = nixos::trees("tests/conformance_nixpkgs.rs");
        if trees.is_empty() || nix_instantiate().is_none() {
            return Vec::new();
        }
        let mut all = Vec::new();
        for (name, checked) in checked_examples_and_split() {
            let (lowered, tree) = masgen::build_tree(&checked).expect("build_tree");
            let out = nixos::build_output(&checked).expect("write the output tree");
            for phase in &lowered.phases {
                let prefix = format!("render/{}/{}/", phase.host, phase.phase.name());
                let render: BTreeMap<String, String> = tree
                    .iter()
                    .filter_map(|(p, t)| {
                        let rel = p.as_str().strip_prefix(&prefix)?;
                        Some((rel.to_string(), t.clone()))
                    })
                    .collect();
                for t in &trees {
                    let what = format!("{name} × {} × {} tree", phase.configuration, t.label);
                    match nixos::evaluate(out.path(), &phase.configuration, &t.path) {
                        Ok(eval) => all.push(Evaluated {
                            what,
                            hs: checked.homeserver.clone(),
                            phase: phase.clone(),
                            render: render.clone(),
                            eval,
                        }),
                        // The 2026 tree stands for the default pin, and the
                        // old tree for a release an example pins: there, not
                        // evaluating is a failure, not a skip.
                        Err(e)
                            if t.label == "2026"
                                || nixos::pins_release(&checked.homeserver.nixpkgs) =>
                        {
                            panic!("{what} does not evaluate with nixpkgs' modules:\n{e}")
                        }
                        Err(e) => eprintln!(
                            "SKIP: {what} does not evaluate with nixpkgs' modules, so its \
                             files reach no consumer here (tests/nixos_eval.rs asserts or reports it): {}",
                            e.lines().next().unwrap_or_default()
                        ),
                    }
                }
            }
        }
        all
    })
}

// ------------------------------------------------------------------ nginx

/// Self-signed certificates for every certificate path nixpkgs' nginx.conf
/// names: `/var/lib/acme/<name>/{fullchain,key,chain}.pem` (made by
/// security.acme on NixOS) and the spec's own files (`proxy.tls = "files"`).
/// The evaluations of hosts that run nginx; the others (a homeserver split
/// across hosts) must have none.
fn with_nginx() -> impl Iterator<Item = &'static Evaluated> {
    evaluated().iter().filter(|e| {
        let runs = e.eval.units.contains_key("nginx.service");
        assert_eq!(runs, e.phase.roles.proxy, "{}: nginx.service", e.what);
        runs
    })
}

fn certificates(e: &Evaluated, dir: &Path) -> Vec<(String, String)> {
    let mut map = Vec::new();
    for v in &e.phase.nginx {
        let (cert, key, chain) = match &v.tls {
            TlsMode::None => continue,
            TlsMode::Acme => {
                let d = format!("/var/lib/acme/{}", v.server_name);
                (
                    format!("{d}/fullchain.pem"),
                    format!("{d}/key.pem"),
                    Some(format!("{d}/chain.pem")),
                )
            }
            TlsMode::Files { certificate, key } => (certificate.clone(), key.clone(), None),
        };
        if map.iter().any(|(c, _)| *c == cert) {
            continue;
        }
        let i = map.len();
        let c = dir.join(format!("cert-{i}.pem"));
        let k = dir.join(format!("key-{i}.pem"));
        self_signed(&c, &k, &v.server_name);
        map.push((cert, c.display().to_string()));
        map.push((key, k.display().to_string()));
        if let Some(chain) = chain {
            map.push((chain, c.display().to_string()));
        }
    }
    map
}

#[test]
fn nixpkgs_nginx_conf_passes_nginx_t() {
    let Some(bin) = nginx_bin() else { return };
    if require_tool("openssl", "self-signed certificates for nginx -t").is_none() {
        return;
    }
    let mut count = 0;
    for e in with_nginx() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = runnable_nixpkgs_conf(&e.eval, &bin, &certificates(e, tmp.path()));
        match nginx_test_conf(&conf) {
            Some(Ok(())) => eprintln!("ok: nginx -t accepts nixpkgs' nginx.conf of {}", e.what),
            Some(Err(err)) => panic!(
                "{}: nginx -t refuses nixpkgs' nginx.conf:\n{err}\n{conf}",
                e.what
            ),
            None => return,
        }
        count += 1;
    }
    eprintln!("nginx -t ran on {count} nixpkgs nginx.conf files");
}

/// The routing assertions of tests/conformance_nginx.rs on nixpkgs' own
/// nginx.conf. Besides `runnable_nixpkgs_conf`'s substitutions:
/// * `listen` lines: the HTTPS ones → plain HTTP on a free loopback port
///   (the test's client speaks no TLS), the port-80 ones → another free
///   loopback port, the IPv6 ones dropped;
/// * each `proxy_pass` target of the lowered model → the recording upstream
///   standing in for that service.
///
/// The header checks read nixpkgs' own `proxy_set_header` lines (from
/// `recommendedProxySettings`, through its `include`), not masgen's.
#[test]
fn nixpkgs_nginx_conf_routes_every_example_and_phase() {
    let Some(bin) = nginx_bin() else { return };
    if require_tool("openssl", "self-signed certificates").is_none() {
        return;
    }
    let mut count = 0;
    for e in with_nginx() {
        let tmp = tempfile::tempdir().unwrap();
        let synapse = RecordingUpstream::start("synapse");
        let mas = RecordingUpstream::start("mas");
        let (port, port80) = (free_port(), free_port());
        let mut conf = runnable_nixpkgs_conf(&e.eval, &bin, &certificates(e, tmp.path()));
        conf = loopback_listen(&conf, port, port80);
        for l in e.phase.nginx.iter().flat_map(|v| &v.locations) {
            if let Some(target) = &l.proxy_pass {
                let to = if l.upstream == "mas" { &mas } else { &synapse };
                conf = conf.replace(
                    &format!("proxy_pass {target};"),
                    &format!("proxy_pass http://127.0.0.1:{};", to.port()),
                );
            }
        }
        let headers = proxy_headers(&conf);
        let nginx = match Nginx::start_conf(&conf) {
            Some(Ok(n)) => n,
            Some(Err(err)) => panic!("{}: nginx does not start:\n{err}\n{conf}", e.what),
            None => return,
        };
        check_routes(
            port,
            &e.hs,
            e.phase.phase,
            &synapse,
            &mas,
            &headers,
            &e.what,
        );
        check_port_80(port80, &e.phase, &e.what);
        drop(nginx);
        eprintln!("ok: nixpkgs' nginx.conf routes {}", e.what);
        count += 1;
    }
    eprintln!("routing checked on {count} nixpkgs nginx.conf files");
}

/// Port 80 of every TLS host redirects to HTTPS, except ACME's challenge
/// directory (served from disk, so the 404 of a missing token).
fn check_port_80(port: u16, phase: &HostPhase, what: &str) {
    for v in &phase.nginx {
        if v.tls == TlsMode::None {
            continue;
        }
        let seen = send(port, "GET", &v.server_name, "/_matrix/client/versions");
        let loc = seen.headers.iter().find(|(k, _)| k == "location");
        assert!(
            seen.status == 301
                && loc.is_some_and(
                    |(_, l)| *l == format!("https://{}/_matrix/client/versions", v.server_name)
                ),
            "{what}: http://{}/ does not redirect to https: {} {:?}",
            v.server_name,
            seen.status,
            seen.headers
        );
        if v.tls == TlsMode::Acme {
            let seen = send(port, "GET", &v.server_name, "/.well-known/acme-challenge/x");
            assert_eq!(seen.status, 404, "{what}: ACME challenge on port 80");
        }
    }
}

// --------------------------------------------------------- MAS and Synapse

#[test]
fn nixpkgs_mas_config_validates_against_the_mas_schema() {
    let validator = support::schema::mas_validator();
    let mut count = 0;
    for e in evaluated() {
        let Some(config) = &e.eval.mas_settings else {
            assert!(
                !e.phase.roles.mas,
                "{}: no MAS config.yaml in nixpkgs' evaluation",
                e.what
            );
            continue;
        };
        assert!(
            e.phase.roles.mas,
            "{}: MAS where the spec does not place it",
            e.what
        );
        let errors = support::schema::schema_errors(&validator, config);
        assert!(
            errors.is_empty(),
            "{}: nixpkgs' MAS config.yaml does not validate against mas-config.schema.json:\n{}",
            e.what,
            errors.join("\n")
        );
        count += 1;
    }
    eprintln!("MAS schema checked on {count} nixpkgs MAS configs");
}

// ---------------------------------------------------------------- systemd

/// `systemd-analyze verify` on every unit text nixpkgs would install for
/// masgen's services (matrix-synapse, MAS, nginx, postgresql and every
/// `masgen-*` unit), all of one configuration in one directory. Store paths
/// become executable stand-ins and dependencies outside the set become stub
/// units (tests/support/units.rs says why). Passing means exit 0 and no
/// output at all, as for masgen's renders.
#[test]
fn nixpkgs_units_pass_systemd_analyze_verify() {
    let Some(tool) = require_tool("systemd-analyze", "verifying nixpkgs' unit texts") else {
        return;
    };
    let mut count = 0;
    for e in evaluated() {
        let roles = e.phase.roles;
        for (runs, unit) in [
            (roles.synapse, "matrix-synapse.service"),
            (roles.mas, "matrix-authentication-service.service"),
            (roles.proxy, "nginx.service"),
            (roles.postgres, "postgresql.service"),
        ] {
            assert_eq!(e.eval.units.contains_key(unit), runs, "{}: {unit}", e.what);
        }
        for task in e.phase.tasks.keys() {
            let unit = format!("{task}.service");
            assert!(e.eval.units.contains_key(&unit), "{}: no {unit}", e.what);
        }
        let mut dir = support::units::UnitDir::new();
        let paths: Vec<(&String, std::path::PathBuf)> = e
            .eval
            .units
            .iter()
            .map(|(name, text)| (name, dir.add(name, text)))
            .collect();
        dir.stub_dependencies();
        for (name, path) in paths {
            if let Err(err) = support::units::verify(&tool, &path) {
                panic!(
                    "{}: systemd-analyze verify {name} (nixpkgs' unit text): {err}\n--- unit ---\n{}",
                    e.what,
                    std::fs::read_to_string(&path).unwrap()
                );
            }
            count += 1;
        }
        eprintln!(
            "ok: systemd-analyze verify passes nixpkgs' units of {}",
            e.what
        );
    }
    eprintln!("systemd-analyze verify ran on {count} nixpkgs unit texts");
}

// ---------------------------------------------------------------- Synapse

/// The config files nixpkgs' matrix-synapse unit passes after its
/// homeserver.yaml (`--config-path` in ExecStart: extraConfigFiles, among
/// them masgen's runtime password-config file), and that file's content as
/// masgen's module would write it: its settings from the JSON file the
/// evaluation generated, its pepper file from the writer unit's
/// `LoadCredential=pepper:…`.
fn synapse_extra_files(e: &Evaluated) -> (Vec<String>, Option<PasswordConfigOut>) {
    let exec = e.eval.exec_texts("matrix-synapse").join(" ");
    let mut paths = Vec::new();
    let mut words = exec.split_whitespace();
    while let Some(w) = words.next() {
        if w == "--config-path" {
            paths.extend(words.next().map(String::from));
        }
    }
    assert_eq!(
        paths.first(),
        e.eval.synapse_config_path.as_ref(),
        "{}: the first --config-path is not nixpkgs' homeserver.yaml: {exec}",
        e.what
    );
    let extra: Vec<String> = paths.into_iter().skip(1).collect();
    if !extra.iter().any(|p| p == PASSWORD_CONFIG_PATH) {
        return (extra, None);
    }
    (extra, Some(password_config_of(e)))
}

/// masgen's runtime password-config file as the host writes it: its settings
/// from the JSON file the evaluation generated, its pepper file from the
/// writer unit's `LoadCredential=pepper:…`.
fn password_config_of(e: &Evaluated) -> PasswordConfigOut {
    let settings = e
        .eval
        .files
        .values()
        .find(|f| f.name == "masgen-synapse-password-config-settings.json")
        .and_then(|f| f.value.clone())
        .unwrap_or_else(|| panic!("{}: no password_config settings file", e.what));
    let writer = e
        .eval
        .units
        .get(PASSWORD_CONFIG_UNIT)
        .unwrap_or_else(|| panic!("{}: no {PASSWORD_CONFIG_UNIT}", e.what));
    let pepper_file = writer
        .lines()
        .find_map(|l| l.strip_prefix("LoadCredential=pepper:"))
        .unwrap_or_else(|| panic!("{}: the writer loads no pepper:\n{writer}", e.what))
        .to_string();
    PasswordConfigOut {
        settings,
        pepper_file,
    }
}

/// The Synapse settings this host deploys: nixpkgs' homeserver.yaml where
/// Synapse runs; on MAS's host of a split homeserver, the homeserver.yaml
/// modules/tasks.nix makes for syn2mas (the `--synapse-config` store file of
/// its units).
fn synapse_settings_here(e: &Evaluated) -> Option<serde_json::Value> {
    if e.phase.roles.synapse {
        return e.eval.synapse_settings.clone();
    }
    // Synapse is off here, so the only homeserver.yaml the evaluation
    // generates is the one tasks.nix makes from Synapse's settings.
    let mut made = e
        .eval
        .files
        .values()
        .filter(|f| f.name == "homeserver.yaml");
    let file = made.next()?;
    assert!(
        made.next().is_none(),
        "{}: two homeserver.yaml files",
        e.what
    );
    file.value.clone()
}

/// Synapse's loader (`python -m synapse.config -c … -c …`) on nixpkgs'
/// homeserver.yaml (the settings of its `formats.yaml` file, nixpkgs'
/// defaults included) and the extra files its unit passes, after nixpkgs'
/// preStart (`--generate-keys`). The substitutions are
/// tests/support/synapse.rs's `write_config`: paths into a temp dir, secret
/// files → canary stand-ins, the runtime password-config file written the
/// way modules/synapse-secrets.nix writes it, `url_preview_enabled` off (no
/// lxml in the venv), a free loopback port. Synapse must read back the
/// phase's delegation and, where there is one, the pepper.
#[test]
fn synapse_loader_accepts_nixpkgs_homeserver_yaml() {
    let Some(py) = synapse_python() else { return };
    let mut count = 0;
    for e in evaluated().iter().filter(|e| e.phase.roles.synapse) {
        let settings = e
            .eval
            .synapse_settings
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no homeserver.yaml in the evaluation", e.what));
        let (extra, pc) = synapse_extra_files(e);
        let pg = PgTarget {
            socket_dir: "/nonexistent/masgen-test-postgres".into(),
            port: 5432,
        };
        let none = |_: &Path, _: &Path| serde_json::json!({});
        let setup = write_config(&none, settings, &extra, pc.as_ref(), &pg, None);
        setup
            .generate_keys(&py)
            .unwrap_or_else(|err| panic!("{}: {err}", e.what));
        let out = setup.load(&py, Some("mas.enabled")).unwrap_or_else(|err| {
            panic!(
                "{}: Synapse's loader refuses nixpkgs' homeserver.yaml:\n{err}",
                e.what
            )
        });
        let delegated = e.phase.phase == masgen::lower::Phase::Final;
        let expect = format!("mas.enabled: {}", if delegated { "True" } else { "False" });
        assert!(out.contains(&expect), "{}: want `{expect}`:\n{out}", e.what);
        if let Some(pc) = &pc {
            let out = setup
                .load(&py, Some("auth.password_pepper"))
                .unwrap_or_else(|err| panic!("{}: {err}", e.what));
            let pepper = setup.secrets.value(&pc.pepper_file).expect("pepper");
            assert!(
                out.contains(&format!("auth.password_pepper: {pepper}\n")),
                "{}: Synapse read another pepper:\n{out}",
                e.what
            );
        }
        eprintln!(
            "ok: Synapse's loader accepts nixpkgs' homeserver.yaml of {}",
            e.what
        );
        count += 1;
    }
    eprintln!("Synapse's loader ran on {count} nixpkgs homeserver.yaml files");
}

// ------------------------------------------- renders against nixpkgs' files

/// The renders are the files nixpkgs deploys (2026 tree, masgen's default
/// pin): render/…/homeserver.yaml and mas-config.yaml hold masgen's settings;
/// with the nixpkgs defaults each documents in its `#| ` block merged under
/// them they equal the settings nixpkgs' modules write, exactly.
#[test]
fn renders_match_nixpkgs_settings() {
    let mut count = 0;
    for e in evaluated()
        .iter()
        .filter(|e| e.what.ends_with("× 2026 tree"))
    {
        let roles = e.phase.roles;
        for (file, deployed) in [
            ("homeserver.yaml", synapse_settings_here(e)),
            ("mas-config.yaml", e.eval.mas_settings.clone()),
        ] {
            let Some(render) = e.render.get(file) else {
                assert!(
                    deployed.is_none(),
                    "{}: {file} deployed but not rendered",
                    e.what
                );
                continue;
            };
            let ours: serde_json::Value = serde_norway::from_str(render).unwrap();
            let want = merged(&documented(render), &ours);
            let got = no_hashes_json(deployed.as_ref().unwrap_or_else(|| {
                panic!("{}: {file} rendered but not deployed ({roles:?})", e.what)
            }));
            let mut diff = Vec::new();
            json_diff(&want, &got, "", &mut diff);
            assert!(
                diff.is_empty(),
                "{}: render/…/{file} (with its documented nixpkgs defaults) is not what nixpkgs writes:\n{}",
                e.what,
                diff.join("\n")
            );
        }
        // The runtime password-config file: the settings masgen's module
        // writes, and the pepper shown as the file the writer unit loads.
        let pc = if roles.synapse {
            synapse_extra_files(e).1
        } else {
            // MAS's host: only its syn2mas tasks read the file.
            e.eval
                .units
                .get(PASSWORD_CONFIG_UNIT)
                .map(|_| password_config_of(e))
        };
        match (e.render.get("password-config.yaml"), pc) {
            (Some(render), Some(pc)) => {
                let ours: serde_json::Value = serde_norway::from_str(render).unwrap();
                let mut want = pc.settings.clone();
                want["pepper"] = format!("<content of {}>", pc.pepper_file).into();
                assert_eq!(
                    ours,
                    serde_json::json!({ "password_config": want }),
                    "{}: render/…/password-config.yaml is not the file nixpkgs' host writes",
                    e.what
                );
            }
            (None, None) => {}
            (r, p) => panic!(
                "{}: password-config.yaml rendered: {}, on the host: {}",
                e.what,
                r.is_some(),
                p.is_some()
            ),
        }
        // Every render file is compared by one test of this file.
        for file in e.render.keys() {
            assert!(
                [
                    "homeserver.yaml",
                    "mas-config.yaml",
                    "nginx.conf",
                    "password-config.yaml"
                ]
                .contains(&file.as_str())
                    || file.starts_with("units/"),
                "{}: render/…/{file} is compared with nothing",
                e.what
            );
        }
        count += 1;
    }
    eprintln!("renders compared with {count} nixpkgs evaluations");
}

/// render/…/nginx.conf, its `#| ` lines (nixpkgs' own part) included, is
/// nixpkgs' nginx.conf statement by statement (whitespace, comments and
/// store-path names aside; nixpkgs' `include` of its proxy headers counted
/// as the lines it includes).
#[test]
fn render_nginx_conf_is_nixpkgs_nginx_conf() {
    let mut count = 0;
    for e in evaluated()
        .iter()
        .filter(|e| e.what.ends_with("× 2026 tree"))
    {
        let Some(render) = e.render.get("nginx.conf") else {
            assert!(!e.phase.roles.proxy, "{}: no nginx.conf rendered", e.what);
            continue;
        };
        let ours = nginx_statements(&no_store_names(&uncommented(render)));
        let theirs = nginx_statements(&no_store_names(&inlined(&e.eval)));
        if ours != theirs {
            let at = ours.iter().zip(&theirs).position(|(a, b)| a != b);
            let at = at.unwrap_or(ours.len().min(theirs.len()));
            let from = at.saturating_sub(3);
            panic!(
                "{}: render/…/nginx.conf differs from nixpkgs' nginx.conf at statement {at}:\n\
                 render:  {:#?}\nnixpkgs: {:#?}",
                e.what,
                &ours[from..(at + 4).min(ours.len())],
                &theirs[from..(at + 4).min(theirs.len())]
            );
        }
        count += 1;
    }
    eprintln!("nginx.conf renders compared with {count} nixpkgs evaluations");
}

/// Every render/…/units/<task>.service, its `#| ` lines included, has the
/// sections, keys and values of nixpkgs' unit text for that task (the order
/// of keys aside, which NixOS sorts; store paths as `unit_word` says).
#[test]
fn render_units_are_nixpkgs_units() {
    let mut count = 0;
    for e in evaluated()
        .iter()
        .filter(|e| e.what.ends_with("× 2026 tree"))
    {
        for task in e.phase.tasks.keys() {
            let unit = format!("{task}.service");
            let render = &e.render[&format!("units/{unit}")];
            let ours = unit_sections(&uncommented(render));
            let theirs = unit_sections(&e.eval.units[&unit]);
            if ours != theirs {
                let mut diff = Vec::new();
                for (s, keys) in ours.iter().chain(&theirs) {
                    for k in keys.keys() {
                        let (a, b) = (
                            ours.get(s).and_then(|m| m.get(k)),
                            theirs.get(s).and_then(|m| m.get(k)),
                        );
                        if a != b
                            && !diff
                                .iter()
                                .any(|d: &String| d.starts_with(&format!("{s} {k}:")))
                        {
                            diff.push(format!("{s} {k}: render {a:?} / nixpkgs {b:?}"));
                        }
                    }
                }
                panic!(
                    "{}: render/…/units/{unit} is not nixpkgs' unit:\n{}\n--- nixpkgs ---\n{}",
                    e.what,
                    diff.join("\n"),
                    e.eval.units[&unit]
                );
            }
            count += 1;
        }
    }
    eprintln!("{count} unit renders compared with nixpkgs' unit texts");
}
