//! What each nixpkgs branch masgen supports provides, and which branch a
//! `flake.nixpkgs` reference names. The facts and their sources are in
//! docs/notes.md ("nixpkgs branches"); docs/guide.md explains the table.

use super::SynapseVersion;

/// nixpkgs' `services.matrix-authentication-service` module on a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasModule {
    /// No module: masgen's `modules/mas-compat.nix` declares the options.
    Missing,
    /// nixpkgs' module, with the `credentials` option masgen sets.
    WithCredentials,
}

/// One supported branch. Versions are lower bounds: stable branches receive
/// Synapse and MAS updates, so a branch deploys this release or a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Branch {
    pub name: &'static str,
    pub mas_module: MasModule,
    /// Lowest MAS release the branch ships.
    pub mas_package: &'static str,
    /// Lowest Synapse release line the branch deploys.
    pub synapse: (u32, u32),
    /// Its ACME module refuses certificates without an account e-mail address.
    pub acme_email_required: bool,
    /// No longer maintained: no security updates.
    pub end_of_life: bool,
}

/// One row per branch; docs/notes.md cites every value.
pub const BRANCHES: &[Branch] = &[
    Branch {
        name: "nixos-25.11",
        mas_module: MasModule::Missing,
        mas_package: "1.4.1",
        synapse: (1, 146),
        acme_email_required: true,
        end_of_life: true,
    },
    Branch {
        name: "nixos-26.05",
        mas_module: MasModule::Missing,
        mas_package: "1.16.0",
        synapse: (1, 152),
        // Not verified that nixpkgs#489983 (e-mail optional) is on 26.05.
        acme_email_required: true,
        end_of_life: false,
    },
    Branch {
        name: "nixos-unstable",
        mas_module: MasModule::WithCredentials,
        mas_package: "1.20.0",
        synapse: (1, 156),
        acme_email_required: false,
        end_of_life: false,
    },
];

/// The branch a spec without `flake.nixpkgs` builds against: the only one
/// with nixpkgs' MAS module and its `credentials` option.
pub const DEFAULT_BRANCH: &str = "nixos-unstable";

pub fn default_url() -> String {
    format!("github:NixOS/nixpkgs/{DEFAULT_BRANCH}")
}

impl Branch {
    pub fn synapse_version(&self) -> SynapseVersion {
        SynapseVersion {
            major: self.synapse.0,
            minor: self.synapse.1,
            patch: None,
        }
    }
}

/// The table row a `flake.nixpkgs` reference names, if masgen knows it.
/// A commit, a fork or a local checkout is unknown: what it provides is
/// decided when the configuration is evaluated.
pub fn branch_of(url: &str) -> Option<&'static Branch> {
    let name = normalize(git_ref(url.trim())?)?;
    BRANCHES.iter().find(|b| b.name == name)
}

/// The ref of NixOS/nixpkgs a flake reference names (`master` when none).
fn git_ref(url: &str) -> Option<&str> {
    let (repo_and_ref, query) = match url.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (url, None),
    };
    let query_ref = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("ref="))
            .map(|r| r.trim_start_matches("refs/heads/"))
    });
    if let Some(rest) = strip_prefix_ci(repo_and_ref, "github:nixos/nixpkgs") {
        return match rest.strip_prefix('/') {
            // (An empty ref is no branch: `normalize` refuses it.)
            Some(r) => Some(r),
            _ if rest.is_empty() => Some(query_ref.unwrap_or("master")),
            _ => None,
        };
    }
    for prefix in [
        "git+https://github.com/nixos/nixpkgs.git",
        "git+https://github.com/nixos/nixpkgs",
    ] {
        if let Some(rest) = strip_prefix_ci(repo_and_ref, prefix) {
            return rest.is_empty().then(|| query_ref.unwrap_or("master"));
        }
    }
    if let Some(rest) = strip_prefix_ci(repo_and_ref, "https://github.com/nixos/nixpkgs/archive/") {
        return rest.strip_suffix(".tar.gz");
    }
    if let Some(rest) = repo_and_ref.strip_prefix("https://channels.nixos.org/") {
        return rest.strip_suffix("/nixexprs.tar.xz");
    }
    None
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `nixos-25.11-small`, `release-25.11`, `nixpkgs-25.11-darwin` → `nixos-25.11`;
/// `master`, `nixpkgs-unstable`, `nixos-unstable-small` → `nixos-unstable`.
fn normalize(git_ref: &str) -> Option<String> {
    if [
        "master",
        "nixos-unstable",
        "nixos-unstable-small",
        "nixpkgs-unstable",
    ]
    .contains(&git_ref)
    {
        return Some(DEFAULT_BRANCH.to_string());
    }
    let version = ["nixos-", "release-", "nixpkgs-"]
        .iter()
        .find_map(|p| git_ref.strip_prefix(p))?;
    let version = version
        .strip_suffix("-small")
        .or_else(|| version.strip_suffix("-darwin"))
        .unwrap_or(version);
    // Whether it is a release at all is the table's to say (branch_of).
    Some(format!("nixos-{version}"))
}

/// What `masgen check` says about the pin: which MAS module the
/// configurations use and what the pinned nixpkgs deploys.
pub fn describe(url: &str) -> String {
    match branch_of(url) {
        Some(b) => {
            let module = match b.mas_module {
                MasModule::WithCredentials => {
                    "has the MAS module with `credentials`: the configurations use nixpkgs' own module"
                }
                MasModule::Missing => {
                    "has no MAS module: the configurations import masgen's compatible module (masgen/modules/mas-compat.nix)"
                }
            };
            format!(
                "nixpkgs `{url}` is {}, which {module}; it deploys Synapse {}.{} or newer and MAS {} or newer; {}",
                b.name,
                b.synapse.0,
                b.synapse.1,
                b.mas_package,
                if b.acme_email_required {
                    "ACME certificates need an e-mail address with it"
                } else {
                    "its ACME module needs no e-mail address"
                },
            )
        }
        None => format!(
            "nixpkgs `{url}` is not a branch masgen knows ({}): the configurations use its MAS module if it has one with `credentials`, masgen's compatible module otherwise (decided when they are evaluated); `synapse.version` is taken as written",
            BRANCHES.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(url: &str) -> Option<&'static str> {
        branch_of(url).map(|b| b.name)
    }

    #[test]
    fn flake_references_name_their_branch() {
        assert_eq!(
            name("github:NixOS/nixpkgs/nixos-25.11"),
            Some("nixos-25.11")
        );
        assert_eq!(
            name("github:nixos/nixpkgs/nixos-26.05-small"),
            Some("nixos-26.05")
        );
        assert_eq!(
            name("github:NixOS/nixpkgs/release-26.05"),
            Some("nixos-26.05")
        );
        assert_eq!(
            name("github:NixOS/nixpkgs/nixos-unstable"),
            Some("nixos-unstable")
        );
        assert_eq!(
            name("github:NixOS/nixpkgs/nixpkgs-unstable"),
            Some("nixos-unstable")
        );
        assert_eq!(name("github:NixOS/nixpkgs"), Some("nixos-unstable"));
        assert_eq!(
            name("git+https://github.com/NixOS/nixpkgs?ref=nixos-25.11"),
            Some("nixos-25.11")
        );
        assert_eq!(
            name("https://github.com/NixOS/nixpkgs/archive/nixos-26.05.tar.gz"),
            Some("nixos-26.05")
        );
        assert_eq!(
            name("https://channels.nixos.org/nixos-25.11/nixexprs.tar.xz"),
            Some("nixos-25.11")
        );
    }

    #[test]
    fn commits_forks_and_unsupported_branches_are_unknown() {
        assert_eq!(
            name("github:NixOS/nixpkgs/0fcd94ee8f1a9d6f1d2e7b4c3a5e6f7a8b9c0d1e"),
            None
        );
        assert_eq!(name("github:someone/nixpkgs/nixos-25.11"), None);
        assert_eq!(name("github:NixOS/nixpkgs/nixos-24.11"), None);
        assert_eq!(name("github:NixOS/nixpkgs/nixos-26.11"), None);
        assert_eq!(name("path:/home/me/nixpkgs"), None);
        assert_eq!(name("nixpkgs"), None);
        assert_eq!(name("github:NixOS/nixpkgs/"), None);
        assert_eq!(name("github:NixOS/nixpkgs-foo/nixos-25.11"), None);
    }

    #[test]
    fn the_default_pin_has_the_mas_module_with_credentials() {
        let b = branch_of(&default_url()).expect("the default pin is in the table");
        assert_eq!(b.mas_module, MasModule::WithCredentials);
        assert!(!b.acme_email_required);
        // The release branches masgen supports lack the module.
        for old in ["nixos-25.11", "nixos-26.05"] {
            let b = BRANCHES.iter().find(|b| b.name == old).unwrap();
            assert_eq!(b.mas_module, MasModule::Missing, "{old}");
            assert!(b.acme_email_required, "{old}");
        }
    }

    #[test]
    fn every_branch_ships_a_synapse_with_the_stable_block() {
        for b in BRANCHES {
            assert!(b.synapse_version().has_stable_delegation(), "{}", b.name);
        }
    }

    #[test]
    fn describe_says_which_module_is_used() {
        let d = describe("github:NixOS/nixpkgs/nixos-25.11");
        assert!(
            d.contains("mas-compat.nix") && d.contains("need an e-mail"),
            "{d}"
        );
        let d = describe(&default_url());
        assert!(
            d.contains("nixpkgs' own module") && d.contains("1.156"),
            "{d}"
        );
        let d = describe("github:NixOS/nixpkgs/abc123");
        assert!(d.contains("not a branch masgen knows"), "{d}");
    }
}
