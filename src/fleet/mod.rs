//! Many homeservers, one flake: `masgen build a.toml b.toml -o out/` (or a
//! fleet file listing the specs) validates every spec on its own, then
//! checks what two specs must not share (a host, a port on a host, a public
//! hostname, a configuration name), and builds one output tree: one
//! `nixosConfigurations` entry per host and phase, masgen's modules once.
//!
//! A fleet of one spec builds exactly the tree `masgen build spec.toml`
//! always built; from two specs on, each homeserver's plan moves to
//! `homeservers/<server_name>/` and `PLAN.md` lists them (docs/guide.md,
//! "Many homeservers").

mod clash;
mod file;

use camino::{Utf8Path, Utf8PathBuf};

use crate::diag::Report;
use crate::emit::{self, OutputTree};
use crate::lower::{self, Lowered};
use crate::Checked;

pub use file::{is_fleet_file, read_fleet_file};

/// One spec of a fleet: validated, or its diagnostics.
pub struct Spec {
    pub path: Utf8PathBuf,
    pub result: Result<Checked, Report>,
}

impl Spec {
    /// The name `--only` takes besides the server name: the file stem.
    pub fn stem(&self) -> &str {
        self.path.file_stem().unwrap_or(self.path.as_str())
    }
}

/// Every spec of a fleet, in the order given.
pub struct Fleet {
    pub specs: Vec<Spec>,
}

impl Fleet {
    /// Whether every spec validated and no two clash.
    pub fn is_ok(&self) -> bool {
        self.specs.iter().all(|s| s.result.is_ok())
    }

    /// The validated specs, in order.
    pub fn checked(&self) -> Vec<&Checked> {
        self.specs
            .iter()
            .filter_map(|s| s.result.as_ref().ok())
            .collect()
    }

    /// The homeservers `--only NAME` selects (all without it): NAME is a
    /// server name or a spec's file stem. `Err` says why none matches.
    pub fn select(&self, only: Option<&str>) -> Result<Vec<&Checked>, String> {
        self.select_by("--only", only)
    }

    /// [`Self::select`] for a flag of another name (`apply --homeserver`).
    pub fn select_by(&self, flag: &str, only: Option<&str>) -> Result<Vec<&Checked>, String> {
        let all = self.checked();
        let Some(name) = only else { return Ok(all) };
        let by_server: Vec<&Checked> = all
            .iter()
            .copied()
            .filter(|c| c.homeserver.server_name == name)
            .collect();
        if !by_server.is_empty() {
            return Ok(by_server);
        }
        let by_stem: Vec<&Spec> = self.specs.iter().filter(|s| s.stem() == name).collect();
        match by_stem.as_slice() {
            [one] => Ok(one.result.as_ref().ok().into_iter().collect()),
            [] => {
                let names: Vec<String> = all
                    .iter()
                    .map(|c| c.homeserver.server_name.clone())
                    .collect();
                Err(format!(
                    "{flag} {name}: no homeserver of that server name or spec file stem; the fleet has: {}",
                    names.join(", ")
                ))
            }
            several => {
                let paths: Vec<&str> = several.iter().map(|s| s.path.as_str()).collect();
                Err(format!(
                    "{flag} {name}: several specs have that file stem ({}); give the server name instead",
                    paths.join(", ")
                ))
            }
        }
    }
}

/// The spec files `inputs` name: specs as they are, fleet files replaced by
/// the specs they list. `Err` holds a fleet file's diagnostics.
pub fn expand(inputs: &[Utf8PathBuf]) -> anyhow::Result<Result<Vec<Utf8PathBuf>, Report>> {
    let mut specs = Vec::new();
    for input in inputs {
        if !is_fleet_file(input) {
            specs.push(input.clone());
            continue;
        }
        match read_fleet_file(input)? {
            Ok(listed) => specs.extend(listed),
            Err(report) => return Ok(Err(report)),
        }
    }
    Ok(Ok(specs))
}

/// Reads and validates every spec, then checks the specs against each other.
pub fn load(specs: &[Utf8PathBuf]) -> anyhow::Result<Fleet> {
    // Each spec is read and validated on its own, on every core; the first
    // error in the order given is the one reported, as in a sequential loop.
    let results = crate::par::map(specs, 8, |path| crate::check_file(path));
    let mut fleet = Fleet { specs: Vec::new() };
    for (path, result) in specs.iter().zip(results) {
        fleet.specs.push(Spec {
            path: path.clone(),
            result: result?,
        });
    }
    clash::check(&mut fleet.specs);
    // Every diagnostic is rendered: the documents are not needed any more.
    for spec in &mut fleet.specs {
        if let Ok(checked) = &mut spec.result {
            checked.source.release_document();
        }
    }
    Ok(fleet)
}

/// Lowers and emits the output tree of validated specs; `out_dir` is how the
/// plans' commands name the output directory. One spec gives the tree
/// [`crate::build_tree_for`] gives.
pub fn build_tree(
    members: &[&Checked],
    out_dir: &str,
) -> anyhow::Result<(Vec<Lowered>, OutputTree)> {
    if let [one] = members {
        let (lowered, tree) = crate::build_tree_for(one, out_dir)?;
        return Ok((vec![lowered], tree));
    }
    // Every homeserver's lowering, plan, rehearsal data and host files are
    // independent of the others: made on every core, joined in order.
    let made = crate::par::map(members, 4, |checked| member(checked, out_dir));
    let mut lowered = Vec::with_capacity(made.len());
    let mut parts = Vec::with_capacity(made.len());
    for result in made {
        let (l, files) = result?;
        lowered.push(l);
        parts.push(files);
    }
    let index = OutputTree::from([("PLAN.md".into(), plan_index(members, &lowered))]);
    let tree = emit::emit_fleet(&lowered, parts, index)?;
    Ok((lowered, tree))
}

/// One homeserver of a fleet, lowered, and its files.
fn member(checked: &Checked, out_dir: &str) -> anyhow::Result<(Lowered, emit::MemberFiles)> {
    let lowered = lower::lower(&checked.homeserver);
    let dir = plan_dir(&checked.homeserver.server_name);
    let (plan_files, plan) = crate::own_plan(&checked.homeserver, out_dir);
    let inputs = emit::Inputs {
        spec_name: spec_name(checked),
        spec_text: &checked.source.text,
    };
    // The plans go under the homeserver's directory; the rehearsal data
    // stays where the flake's `checks` read it (`rehearsal/<host>.nix`).
    let mut extra: Vec<(Utf8PathBuf, String)> = plan_files
        .into_iter()
        .map(|(name, text)| (dir.join(name), text))
        .collect();
    extra.extend(emit::rehearsal::files(
        &checked.homeserver,
        &lowered,
        plan.as_ref().map_err(String::as_str),
        &inputs,
    ));
    let files = emit::member_files(&lowered, &inputs, extra)?;
    Ok((lowered, files))
}

/// `homeservers/<server_name>`: where a fleet member's plan goes.
pub fn plan_dir(server_name: &str) -> Utf8PathBuf {
    Utf8PathBuf::from("homeservers").join(server_name)
}

fn spec_name(checked: &Checked) -> &str {
    Utf8Path::new(&checked.source.name)
        .file_name()
        .unwrap_or("spec.toml")
}

/// The fleet's `PLAN.md`: which homeserver's plan is where.
fn plan_index(members: &[&Checked], lowered: &[Lowered]) -> String {
    let mut text = format!(
        "<!-- @generated by masgen -->\n# Plans of {} homeservers\n\n\
         Each homeserver's activation plan, from where a host of its spec's mode starts \
         (`masgen plan SPECS --only NAME` plans from where a host is):\n\n",
        members.len()
    );
    for (checked, lowered) in members.iter().zip(lowered) {
        let hosts: Vec<String> = lowered
            .hosts
            .iter()
            .map(|h| format!("`{}`", h.name))
            .collect();
        let dir = plan_dir(&checked.homeserver.server_name);
        text.push_str(&format!(
            "- `{}` ({}, host {}): [{dir}/PLAN.md]({dir}/PLAN.md)\n",
            checked.homeserver.server_name,
            spec_name(checked),
            hosts.join(", ")
        ));
    }
    text
}
