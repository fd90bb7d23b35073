//! masgen: compile a Matrix homeserver + MAS spec into a reviewable NixOS flake.
//!
//! The pipeline, one module per stage:
//! `spec` (read TOML) → `model` (validate into typed values) → `lower` (per
//! host, per phase settings and units) → `emit` (files in memory) →
//! `write` (the only stage touching the disk); `diff` and `plan` read the
//! results.

pub mod diag;
pub mod nix;
pub mod spec;
