//! `[hosts.<name>]`: where the host's own configuration (file systems, boot
//! loader, users) comes from: a flake (`base_flake`) or a plain NixOS
//! configuration file (`base_config`, e.g. /etc/nixos/configuration.nix).

use super::*;

/// Validates the base of host `name` and returns its `base_config`, if any.
/// `about` is where a missing base is reported: the host's table, or where the host is named.
pub(super) fn check_host_base(
    c: &mut Checker,
    name: &str,
    h: &raw::HostSpec,
    about: KeyPath,
) -> Option<String> {
    let path = |key: &str| at("hosts").key(name).key(key);
    if crate::emit::RESERVED_NODE_NAMES.contains(&name) {
        c.error(
            "host.colmena_reserved",
            about.clone(),
            format!("host `{name}` would be the node `{name}` of the flake's Colmena hive, a name Colmena reserves"),
            "rename the host: Colmena reserves `meta`, `defaults` and `network`",
        );
    }
    match (&h.base_flake, &h.base_config) {
        (None, None) => {
            c.warn(
                "host.no_base_flake",
                about,
                format!("host `{name}` has no `base_flake` or `base_config`: its NixOS configurations lack file systems, boot loader and users, so they will not build as they are"),
                format!("add `[hosts.{name}]` with `base_config = \"/etc/nixos/configuration.nix\"` (a plain NixOS configuration) or `base_flake = \"path:/etc/nixos\"` (a flake exporting the host's own module)"),
            );
            None
        }
        (Some(_), Some(_)) => {
            c.error(
                "host.base_twice",
                path("base_config"),
                format!("host `{name}` names both a `base_flake` and a `base_config`"),
                "keep one: `base_config` for a plain configuration.nix, `base_flake` for a flake exporting a NixOS module",
            );
            None
        }
        (Some(_), None) => None,
        (None, Some(file)) => {
            if h.base_module.is_some() {
                c.error(
                    "host.base_module",
                    path("base_module"),
                    "`base_module` names a module of `base_flake`; a `base_config` file is imported as it is",
                    "remove `base_module`",
                );
            }
            config_file(c, &path("base_config"), file).then(|| file.clone())
        }
    }
}

/// `/dir/file.nix`: its directory becomes the flake input `path:/dir`, so the
/// path must be absolute and safe to write into a flake URL.
fn config_file(c: &mut Checker, at_key: &KeyPath, file: &str) -> bool {
    let fine = file.starts_with('/')
        && !file.starts_with("/nix/store/")
        && split_config(file).is_some_and(|(dir, name)| !dir.is_empty() && !name.is_empty())
        && file
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "/._-+".contains(ch));
    if !fine {
        c.error(
            "host.base_config",
            at_key.clone(),
            format!("`{file}` is not the absolute path of a NixOS configuration file below `/`"),
            "write the file's absolute path, e.g. `/etc/nixos/configuration.nix` (letters, digits and `/._-+` only); its directory is copied into the Nix store as a flake input",
        );
    }
    fine
}

/// `/etc/nixos/configuration.nix` → (`/etc/nixos`, `configuration.nix`).
fn split_config(file: &str) -> Option<(&str, &str)> {
    file.rsplit_once('/')
}
