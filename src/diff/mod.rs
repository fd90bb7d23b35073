//! `masgen diff`: what a build would change on a host, for a pull-request
//! reviewer and for the operator.
//!
//! Three parts, kept apart:
//! - reading the old side ([`input`] for a tree on disk or the spec at a git
//!   revision, [`system`] for a NixOS system root, shared with `plan`): the
//!   only code that touches the disk or runs `git`; it never writes;
//! - the pure comparison ([`compare`]): old tree or system + new tree →
//!   [`Changeset`];
//! - rendering ([`render`]): text, Markdown, JSON.
//!
//! docs/diff.md describes the output, the JSON schema and how switching is
//! predicted.

mod changeset;
pub mod compare;
pub mod input;
pub mod nginx;
mod nixdata;
pub mod render;
pub mod state;
pub mod values;

use camino::{Utf8Path, Utf8PathBuf};

pub use crate::system;
pub use changeset::*;

use crate::diag::Report;
use crate::emit::OutputTree;
use crate::{build_tree_for, check_source, flake_ref, spec, Checked};

/// What the new tree is compared against (exactly one of the CLI flags).
#[derive(Debug, Clone)]
pub enum Baseline {
    /// `--against DIR`: a previous output tree.
    Tree(Utf8PathBuf),
    /// `--against-rev REV`: the spec as committed at REV.
    Rev(String),
    /// `--system ROOT`: a NixOS system root; for a homeserver split over
    /// hosts, one per host compared (`--system NAME=ROOT`).
    System(std::collections::BTreeMap<String, Utf8PathBuf>),
}

/// The result of [`diff`]: a changeset, or a spec that does not validate.
pub enum Outcome {
    Changes(Box<Changeset>),
    /// A spec failed validation; `which` names it (the spec, or `REV:path`).
    InvalidSpec {
        which: String,
        diagnostics: Report,
    },
}

/// Builds the new tree from `checked` and compares it with `baseline`, the
/// way `masgen build -o <dir>` builds it: `<dir>` is `DIR` for `--against DIR`,
/// else `output`.
pub fn diff(
    spec_path: &Utf8Path,
    checked: &Checked,
    baseline: &Baseline,
    output: &Utf8Path,
) -> anyhow::Result<Outcome> {
    let spec_label = spec_path.to_string();
    match baseline {
        Baseline::Tree(dir) => {
            let (_, mut new) = build_tree_for(checked, &flake_ref(dir))?;
            let (old, notes) = input::read_tree_sharing(dir, &mut new)?;
            let against = Against::Tree {
                path: dir.to_string(),
            };
            let mut c = compare::compare_trees(&spec_label, against, &old, &new)
                .map_err(|e| anyhow::anyhow!("cannot compare: {e}"))?;
            c.notes.splice(0..0, notes);
            Ok(Outcome::Changes(Box::new(c)))
        }
        Baseline::Rev(rev) => {
            let (_, new) = build_tree_for(checked, &flake_ref(output))?;
            let at = input::spec_at_rev(spec_path, rev)?;
            let mut notes = Vec::new();
            let old = match &at.text {
                None => {
                    notes.push(format!("{} does not exist: everything is new", at.object));
                    OutputTree::new()
                }
                Some(text) => {
                    match check_source(spec::Source::new(at.object.as_str(), text.clone())) {
                        Ok(old_checked) => build_tree_for(&old_checked, &flake_ref(output))?.1,
                        Err(diagnostics) => {
                            return Ok(Outcome::InvalidSpec {
                                which: at.object,
                                diagnostics,
                            })
                        }
                    }
                }
            };
            let against = Against::Rev { rev: rev.clone() };
            let mut c = compare::compare_trees(&spec_label, against, &old, &new)
                .map_err(|e| anyhow::anyhow!("cannot compare: {e}"))?;
            c.notes.splice(0..0, notes);
            Ok(Outcome::Changes(Box::new(c)))
        }
        Baseline::System(roots) => {
            let (_, new) = build_tree_for(checked, &flake_ref(output))?;
            let configs =
                state::configurations(&new).map_err(|e| anyhow::anyhow!("internal error: {e}"))?;
            let mut systems = Vec::new();
            for (host, root) in roots {
                let mut also_read: Vec<String> = configs
                    .iter()
                    .filter(|c| &c.host == host)
                    .flat_map(|c| c.synapse_extra_files())
                    .filter(|f| f != crate::lower::PASSWORD_CONFIG_PATH)
                    .collect();
                also_read.sort();
                also_read.dedup();
                systems.push((host.clone(), system::read(root, &also_read)?));
            }
            let c = compare::compare_system(&spec_label, &systems, &new)
                .map_err(|e| anyhow::anyhow!("cannot compare: {e}"))?;
            Ok(Outcome::Changes(Box::new(c)))
        }
    }
}
