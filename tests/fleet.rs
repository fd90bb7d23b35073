//! Many homeservers in one flake (`examples/fleet/`): one tree for all,
//! clashes between specs as located errors naming both, one bad spec
//! failing alone, `--only`, `--deploy colmena`, and a rebuild that writes
//! nothing. The flake's evaluation is in tests/nixos_eval.rs.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn fleet_dir() -> PathBuf {
    support::repo_root().join("examples/fleet")
}

fn masgen() -> Command {
    let mut c = Command::cargo_bin("masgen").unwrap();
    c.env_remove("MASGEN_LOG").env("NO_COLOR", "1");
    c
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = masgen().current_dir(dir).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The example fleet's three specs copied into a fresh directory.
fn copy_fleet() -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fleet_dir()).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, work.path().join(path.file_name().unwrap())).unwrap();
    }
    work
}

/// Every file under `dir`: relative path → (contents, inode, mtime in ns).
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u64, i128)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let meta = fs::metadata(&path).unwrap();
            let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
            out.push((
                path.strip_prefix(dir).unwrap().into(),
                fs::read(&path).unwrap(),
                meta.ino(),
                mtime,
            ));
        }
    }
    out.sort();
    out
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no `{from}`", path.display());
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Whether `err` has a diagnostic whose title starts with `title` and
/// whose location line (` --> `) is `at`.
fn located(err: &str, at: &str, title: &str) -> bool {
    let lines: Vec<&str> = err.lines().collect();
    lines
        .windows(2)
        .any(|w| w[0].starts_with(title) && w[1].trim_start() == format!("--> {at}"))
}

/// Whether `err` names a second place `at` (` ::: `) with the note `label`.
fn noted(err: &str, at: &str, label: &str) -> bool {
    let lines: Vec<&str> = err.lines().collect();
    lines.windows(2).any(|w| {
        w[0].trim_start() == format!("::: {at}") && w[1].trim_start() == format!("= note: {label}")
    })
}

#[test]
fn the_example_fleet_builds_one_flake_with_every_host_and_phase() {
    let work = copy_fleet();
    let (code, _, err) = run(work.path(), &["build", "fleet.toml", "-o", "out"]);
    assert_eq!(code, 0, "{err}");
    let out = work.path().join("out");
    let flake = fs::read_to_string(out.join("flake.nix")).unwrap();
    for cfg in [
        "matrix-org",
        "matrix-com",
        "matrix-com-prepare",
        "matrix-net",
        "matrix-net-prepare",
        "auth-net",
        "auth-net-prepare",
        "db-net",
        "db-net-prepare",
    ] {
        assert!(
            flake.contains(&format!("      {cfg} = nixpkgs.lib.nixosSystem"))
                || flake.contains(&format!("      {cfg} = inputs.nixpkgs-2.lib.nixosSystem")),
            "no configuration {cfg}:\n{flake}"
        );
        assert!(out
            .join("hosts")
            .join(cfg.trim_end_matches("-prepare"))
            .is_dir());
    }
    // Two pins: the second is its own input, used by its homeserver only.
    assert!(flake.contains("nixpkgs-2 = {\n      url = \"github:NixOS/nixpkgs/nixos-26.05\";"));
    assert!(flake.contains("matrix-com = inputs.nixpkgs-2.lib.nixosSystem"));
    assert!(flake.contains("matrix-org = nixpkgs.lib.nixosSystem"));
    // masgen's modules once, imported once.
    assert_eq!(
        flake.matches("masgen = import ./masgen/modules;").count(),
        1
    );
    assert!(out.join("masgen/modules/default.nix").is_file());
    // Each homeserver's plan, naming its host; the index lists them.
    let index = fs::read_to_string(out.join("PLAN.md")).unwrap();
    for (server, host) in [
        ("example.org", "host `matrix-org`"),
        ("example.com", "host `matrix-com`"),
        ("example.net", "hosts `db-net`, `auth-net`, `matrix-net`"),
    ] {
        let plan =
            fs::read_to_string(out.join("homeservers").join(server).join("PLAN.md")).unwrap();
        assert!(plan.contains(&format!("on {host}")), "{plan}");
        assert!(
            index.contains(&format!("homeservers/{server}/PLAN.md")),
            "{index}"
        );
        assert!(out
            .join("homeservers")
            .join(server)
            .join("plan.json")
            .is_file());
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("masgen-manifest.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = manifest["specs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["example-org.toml", "example-com.toml", "example-net.toml"]
    );
    // The same fleet given as spec files builds the same tree.
    let other = copy_fleet();
    let (code, _, err) = run(
        other.path(),
        &[
            "build",
            "example-org.toml",
            "example-com.toml",
            "example-net.toml",
            "-o",
            "out",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let strip = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        files(dir).into_iter().map(|(p, c, _, _)| (p, c)).collect()
    };
    assert_eq!(strip(&out), strip(&other.path().join("out")));
}

#[test]
fn the_colmena_hive_has_a_node_per_configuration_with_phase_tags() {
    let work = copy_fleet();
    let (code, _, err) = run(work.path(), &["build", "fleet.toml", "-o", "out"]);
    assert_eq!(code, 0, "{err}");
    let flake = fs::read_to_string(work.path().join("out/flake.nix")).unwrap();
    let hive = &flake
        [flake.find("    colmena = {").unwrap()..flake.find("    nixosConfigurations").unwrap()];
    assert!(hive.contains(
        "      matrix-com-prepare = {\n        deployment = {\n          tags = [\n            \"phase-prepare\"\n            \"example.com\"\n          ];\n          targetHost = \"matrix-com\";"
    ), "{hive}");
    assert!(hive.contains("allowApplyAll = false;"), "{hive}");
    assert!(
        hive.contains("matrix-com = inputs.nixpkgs-2.legacyPackages.x86_64-linux;"),
        "{hive}"
    );
    assert!(
        hive.contains("nixpkgs = nixpkgs.legacyPackages.x86_64-linux;"),
        "{hive}"
    );
    // example.org: one configuration; example.com: two; example.net: two on
    // each of its three hosts.
    assert_eq!(hive.matches("targetHost").count(), 9, "{hive}");
}

#[test]
fn a_fleet_of_one_spec_builds_the_tree_of_that_spec() {
    let work = copy_fleet();
    fs::write(
        work.path().join("one.toml"),
        "[fleet]\nspecs = [\"example-com.toml\"]\n",
    )
    .unwrap();
    let (code, _, err) = run(work.path(), &["build", "one.toml", "-o", "out"]);
    assert_eq!(code, 0, "{err}");
    // The same output directory name: plans name it.
    let alone = copy_fleet();
    let (code, _, err) = run(alone.path(), &["build", "example-com.toml", "-o", "out"]);
    assert_eq!(code, 0, "{err}");
    let strip = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        files(dir).into_iter().map(|(p, c, _, _)| (p, c)).collect()
    };
    assert_eq!(
        strip(&work.path().join("out")),
        strip(&alone.path().join("out"))
    );
}

#[test]
fn a_rebuild_with_nothing_changed_writes_no_file() {
    let work = copy_fleet();
    let (code, _, err) = run(work.path(), &["build", "fleet.toml", "-o", "out"]);
    assert_eq!(code, 0, "{err}");
    let out = work.path().join("out");
    let before = files(&out);
    let dir_ino = fs::metadata(&out).unwrap().ino();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (code, _, err) = run(work.path(), &["build", "fleet.toml", "-o", "out"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("0 created, 0 updated, 0 removed"), "{err}");
    assert_eq!(files(&out), before, "a file was rewritten");
    assert_eq!(
        fs::metadata(&out).unwrap().ino(),
        dir_ino,
        "out/ was swapped"
    );
    // And one changed spec changes only its homeserver's files.
    edit(
        &work.path().join("example-org.toml"),
        "minimum_complexity = 3",
        "minimum_complexity = 4",
    );
    let (code, _, err) = run(work.path(), &["build", "fleet.toml", "-o", "out"]);
    assert_eq!(code, 0, "{err}");
    let after = files(&out);
    let changed: Vec<String> = after
        .iter()
        .filter(|f| !before.contains(f))
        .map(|f| f.0.display().to_string())
        .collect();
    assert!(!changed.is_empty());
    assert!(
        changed.iter().all(|p| p.contains("matrix-org")
            || p.contains("example.org")
            || p == "masgen-manifest.json"),
        "{changed:?}"
    );
}

/// Two copies of the fleet's fresh spec: what clashes, unless renamed.
fn two_specs(work: &Path, second: &[(&str, &str)]) {
    let text = fs::read_to_string(fleet_dir().join("example-org.toml")).unwrap();
    fs::write(work.join("a.toml"), &text).unwrap();
    let mut b = text;
    for (from, to) in second {
        assert!(b.contains(from), "no `{from}`");
        b = b.replace(from, to);
    }
    fs::write(work.join("b.toml"), b).unwrap();
}

/// `masgen build a.toml b.toml`: exit 2, nothing written, and stderr.
fn build_fails(work: &Path) -> String {
    let (code, _, err) = run(work, &["build", "a.toml", "b.toml", "-o", "out"]);
    assert_eq!(code, 2, "{err}");
    assert!(!work.join("out").exists(), "output was written");
    assert!(err.contains("a.toml: ok"), "{err}");
    assert!(err.contains("b.toml: failed"), "{err}");
    assert!(
        err.contains("fleet: 1 of 2 specs failed, 1 fine; nothing was written"),
        "{err}"
    );
    err
}

#[test]
fn two_specs_on_one_host_are_a_located_error_naming_both() {
    let work = tempfile::tempdir().unwrap();
    two_specs(
        work.path(),
        &[
            ("example.org", "example.info"),
            ("port = 8008", "port = 8010"),
        ],
    );
    let err = build_fails(work.path());
    assert!(
        located(&err, "b.toml:12:8", "error[fleet.host_taken]: host `matrix-org` belongs to another homeserver of the fleet (`example.org`)"),
        "{err}"
    );
    assert!(
        noted(&err, "a.toml:12:8", "host `matrix-org` of `example.org`"),
        "{err}"
    );
    // The MAS listeners share their default ports on that host, too.
    assert!(err.contains("error[fleet.port_taken]: port 8080 on host `matrix-org` is also MAS's listener of `example.org`"), "{err}");
    assert!(!err.contains("port 8008"), "{err}");
}

#[test]
fn two_specs_with_one_hostname_are_a_located_error_naming_both() {
    let work = tempfile::tempdir().unwrap();
    two_specs(
        work.path(),
        &[
            (
                "server_name = \"example.org\"",
                "server_name = \"example.info\"",
            ),
            ("matrix-org", "matrix-info"),
        ],
    );
    let err = build_fails(work.path());
    let at = |file: &str| {
        let text = fs::read_to_string(work.path().join(file)).unwrap();
        let line = text
            .lines()
            .position(|l| l.starts_with("public_hostname"))
            .unwrap()
            + 1;
        format!("{file}:{line}:1")
    };
    assert!(
        located(&err, &at("b.toml"), "error[fleet.hostname_taken]: `matrix.example.org` is also Synapse's public hostname of `example.org`"),
        "{err}"
    );
    assert!(
        noted(
            &err,
            &at("a.toml"),
            "Synapse's public hostname of `example.org`"
        ),
        "{err}"
    );
    assert!(!err.contains("host_taken"), "{err}");
}

#[test]
fn a_configuration_name_of_two_specs_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let com = fs::read_to_string(fleet_dir().join("example-com.toml")).unwrap();
    fs::write(work.path().join("a.toml"), &com).unwrap();
    let org = fs::read_to_string(fleet_dir().join("example-org.toml")).unwrap();
    fs::write(
        work.path().join("b.toml"),
        org.replace("matrix-org", "matrix-com-prepare"),
    )
    .unwrap();
    let err = build_fails(work.path());
    assert!(err.contains("error[fleet.configuration_taken]: configuration `matrix-com-prepare` (host `matrix-com-prepare`) is also a configuration of `example.com` (host `matrix-com`)"), "{err}");
}

#[test]
fn one_bad_spec_fails_alone_with_its_own_errors() {
    let work = copy_fleet();
    edit(
        &work.path().join("example-com.toml"),
        "mode = \"migrate\"",
        "mode = \"migrat\"",
    );
    let (code, _, err) = run(work.path(), &["build", "fleet.toml", "-o", "out"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        located(&err, "example-com.toml:9:1", "error[homeserver.mode]"),
        "{err}"
    );
    assert!(err.contains("example-org.toml: ok"), "{err}");
    assert!(err.contains("example-net.toml: ok"), "{err}");
    assert!(err.contains("fleet: 1 of 3 specs failed, 2 fine"), "{err}");
    assert!(!work.path().join("out").exists());
    // check says the same, and exits 2.
    let (code, _, err2) = run(work.path(), &["check", "fleet.toml"]);
    assert_eq!(code, 2);
    assert!(
        located(&err2, "example-com.toml:9:1", "error[homeserver.mode]"),
        "{err2}"
    );
}

#[test]
fn a_fleet_file_naming_a_missing_spec_is_located() {
    let work = copy_fleet();
    fs::write(
        work.path().join("bad.toml"),
        "[fleet]\nspecs = [\n  \"example-org.toml\",\n  \"nope.toml\",\n]\nextra = 1\n",
    )
    .unwrap();
    let (code, _, err) = run(work.path(), &["check", "bad.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        located(
            &err,
            "bad.toml:4:3",
            "error[fleet.spec_missing]: no spec file nope.toml"
        ),
        "{err}"
    );
    assert!(
        located(
            &err,
            "bad.toml:6:1",
            "error[fleet.file]: unknown key `fleet.extra`"
        ),
        "{err}"
    );
}

#[test]
fn check_of_a_fleet_reports_each_spec() {
    let (code, out, err) = run(&fleet_dir(), &["check", "fleet.toml"]);
    assert_eq!(code, 0, "{err}");
    for spec in ["example-org.toml", "example-com.toml", "example-net.toml"] {
        assert!(err.contains(&format!("{spec}: ok")), "{err}");
        assert!(out.contains(&format!("{spec}: nixpkgs `")), "{out}");
    }
    assert!(err.contains("fleet: 3 specs ok"), "{err}");
    let (code, out, _) = run(&fleet_dir(), &["check", "--format", "json", "fleet.toml"]);
    assert_eq!(code, 0);
    // The one warning of the fleet, as one JSON line.
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("example-com.toml"), "{out}");
}

#[test]
fn plan_covers_every_homeserver_or_the_one_named() {
    let dir = fleet_dir();
    let (code, out, err) = run(&dir, &["plan", "fleet.toml"]);
    assert_eq!(code, 0, "{err}");
    for heading in [
        "Activation plan for example.org on host `matrix-org`: fresh → delegated",
        "Activation plan for example.com on host `matrix-com`: synapse-only → delegated",
        "Activation plan for example.net on hosts `db-net`, `auth-net`, `matrix-net`: synapse-only → delegated",
    ] {
        assert!(out.contains(heading), "{out}");
    }
    // By server name or by spec file stem; from where the host is.
    for name in ["example.com", "example-com"] {
        let (code, out, err) = run(
            &dir,
            &[
                "plan",
                "fleet.toml",
                "--only",
                name,
                "--from",
                "mas-prepared",
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("Activation plan for example.com on host `matrix-com`: mas-prepared"),
            "{out}"
        );
        assert!(!out.contains("example.org"), "{out}");
    }
    let (code, _, err) = run(&dir, &["plan", "fleet.toml", "--only", "example.xyz"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("the fleet has: example.org, example.com, example.net"),
        "{err}"
    );
    // Where a host is cannot be said for all of them at once.
    let (code, _, err) = run(&dir, &["plan", "fleet.toml", "--from", "fresh"]);
    assert_eq!(code, 2);
    assert!(err.contains("add --only NAME"), "{err}");
    let (code, out, _) = run(&dir, &["plan", "fleet.toml", "--format", "json"]);
    assert_eq!(code, 0);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    let hosts: Vec<&str> = value["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["matrix-org", "matrix-com", "matrix-net"]);
}

#[test]
fn deploy_colmena_turns_rebuild_steps_into_colmena_commands() {
    let dir = fleet_dir();
    let args = [
        "plan",
        "fleet.toml",
        "--only",
        "example.com",
        "--from",
        "synapse-only",
        "--format",
        "json",
    ];
    let (code, out, err) = run(&dir, &[&args[..], &["--deploy", "colmena"]].concat());
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rebuilds: Vec<String> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "rebuild")
        .map(|s| s["commands"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        rebuilds,
        [
            "colmena apply --config ./out/flake.nix --on matrix-com-prepare switch",
            "colmena build --config ./out/flake.nix --on matrix-com",
            "colmena apply --config ./out/flake.nix --on matrix-com switch",
        ]
    );
    assert!(!out.contains("nixos-rebuild switch --flake"), "{out}");
    // The default stays nixos-rebuild.
    let (_, out, _) = run(&dir, &args);
    assert!(
        out.contains("nixos-rebuild switch --flake ./out#matrix-com-prepare"),
        "{out}"
    );
    assert!(!out.contains("colmena"), "{out}");
}

#[test]
fn diff_of_a_fleet_compares_the_whole_tree() {
    let work = copy_fleet();
    let (code, _, err) = run(work.path(), &["build", "fleet.toml", "-o", "out"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(work.path(), &["diff", "fleet.toml", "--against", "out"]);
    assert_eq!(code, 0, "{out}{err}");
    edit(
        &work.path().join("example-net.toml"),
        "kid = \"rsa\"",
        "kid = \"rsa-2\"",
    );
    let (code, out, err) = run(work.path(), &["diff", "fleet.toml", "--against", "out"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("== host auth-net, configuration `auth-net-prepare` (prepare): changed =="),
        "{out}"
    );
    assert!(
        out.contains("== host matrix-org, configuration `matrix-org` (final): unchanged =="),
        "{out}"
    );
    let (code, _, err) = run(
        work.path(),
        &[
            "diff",
            "fleet.toml",
            "--only",
            "example.net",
            "--against",
            "out",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("drop --only"), "{err}");
    // --against-rev and --system are about one homeserver.
    let (code, _, err) = run(
        work.path(),
        &["diff", "fleet.toml", "--system", "/nonexistent"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("add --only NAME"), "{err}");
}

#[test]
fn a_host_named_like_a_colmena_reserved_name_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(fleet_dir().join("example-org.toml")).unwrap();
    fs::write(
        work.path().join("a.toml"),
        text.replace("matrix-org", "meta"),
    )
    .unwrap();
    let (code, _, err) = run(work.path(), &["check", "a.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        located(
            &err,
            "a.toml:12:8",
            "error[host.colmena_reserved]: host `meta` would be the node `meta`"
        ),
        "{err}"
    );
}

/// `diff` holds once what both trees have (`diff::input::read_tree_sharing`,
/// what `masgen diff --against` uses): against the example fleet's own tree,
/// after a hand edit of one host's render, after a change to one spec, and
/// after an edit of masgen's modules (then every configuration is read and
/// nothing is left out), the changeset is the one of the plain reading; with
/// nothing changed, the hosts' and homeservers' files are left out of both
/// trees but for the configurations' `default.nix`.
#[test]
fn diff_reports_the_same_when_it_holds_shared_files_once() {
    use camino::Utf8PathBuf;
    use masgen::diff;
    let work = copy_fleet();
    let names = ["example-org.toml", "example-com.toml", "example-net.toml"];
    let mut args = vec!["build"];
    args.extend(names);
    args.extend(["-o", "out"]);
    let (code, _, err) = run(work.path(), &args);
    assert_eq!(code, 0, "{err}");
    let out = Utf8PathBuf::from_path_buf(work.path().join("out")).unwrap();
    let specs: Vec<Utf8PathBuf> = names
        .iter()
        .map(|n| Utf8PathBuf::from_path_buf(work.path().join(n)).unwrap())
        .collect();
    // (plain changeset, shared changeset, files left out of the new tree,
    // files the old tree holds)
    let compare = || {
        let loaded = masgen::fleet::load(&specs).unwrap();
        let members = loaded.checked();
        let build = || {
            masgen::fleet::build_tree(&members, &masgen::flake_ref(&out))
                .unwrap()
                .1
        };
        let against = || diff::Against::Tree {
            path: out.to_string(),
        };
        let (plain_old, _) = diff::input::read_tree(&out).unwrap();
        let plain = diff::compare::compare_trees("t", against(), &plain_old, &build()).unwrap();
        let mut new = build();
        let whole = new.len();
        let (old, _) = diff::input::read_tree_sharing(&out, &mut new).unwrap();
        let shared = diff::compare::compare_trees("t", against(), &old, &new).unwrap();
        let held: Vec<String> = old.keys().map(|k| k.to_string()).collect();
        (
            diff::render::json(&plain),
            diff::render::json(&shared),
            whole - new.len(),
            held,
        )
    };

    let (plain, shared, left_out, held) = compare();
    assert_eq!(plain, shared);
    assert!(plain.contains("\"changed\": false"), "{plain}");
    assert!(left_out > 20, "left out {left_out}");
    assert!(
        held.iter().all(|f| !f.starts_with("render/")
            && !f.starts_with("homeservers/")
            && (!f.starts_with("hosts/") || f.ends_with("/default.nix"))),
        "{held:?}"
    );

    // A hand edit of one host's render.
    let host = fs::read_dir(out.join("render"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let file = walk_files(&host).into_iter().next().expect("a render file");
    let text = fs::read_to_string(&file).unwrap();
    fs::write(&file, format!("{text}# edited\n")).unwrap();
    let (plain, shared, _, _) = compare();
    assert_eq!(plain, shared);
    assert!(plain.contains("\"changed\": true"), "{plain}");
    fs::write(&file, text).unwrap();

    // A change to one spec (its homeserver's files differ, the others' not).
    let spec = work.path().join("example-org.toml");
    let before = fs::read_to_string(&spec).unwrap();
    fs::write(
        &spec,
        format!("{before}\n[synapse.extra_settings]\nmax_upload_size = \"100M\"\n"),
    )
    .unwrap();
    let (plain, shared, left_out, _) = compare();
    assert_eq!(plain, shared);
    assert!(plain.contains("max_upload_size"), "{plain}");
    assert!(left_out > 0);
    fs::write(&spec, before).unwrap();

    // An edit of masgen's modules: the configurations are what they were
    // (their data is their own directory's), the modules' change is noted,
    // and the equal files are still left out.
    let lib = out.join("masgen/modules/lib.nix");
    let text = fs::read_to_string(&lib).unwrap();
    fs::write(&lib, format!("{text}# edited\n")).unwrap();
    let (plain, shared, left_out, _) = compare();
    assert_eq!(plain, shared);
    assert!(plain.contains("masgen's NixOS modules"), "{plain}");
    assert!(left_out > 20, "left out {left_out}");
}

/// Every file under `dir`, sorted.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = files(dir).into_iter().map(|(p, ..)| dir.join(p)).collect();
    out.sort();
    out
}
