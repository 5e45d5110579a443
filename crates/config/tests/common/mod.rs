//! Shared helpers for the integration tests.
#![allow(dead_code)]

use vmbuild_config::{parse_str, ConfigError, LoadOptions, Plan};

/// Resolves `text` (named `vmbuild.yaml`) with default options.
pub fn plan(text: &str) -> Plan {
    plan_with(text, &LoadOptions::default())
}

pub fn plan_with(text: &str, opts: &LoadOptions) -> Plan {
    match parse_str("vmbuild.yaml", text, opts) {
        Ok(p) => p,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The error `text` gives, as its one-line message.
pub fn err(text: &str) -> String {
    err_with(text, &LoadOptions::default())
}

pub fn err_with(text: &str, opts: &LoadOptions) -> String {
    error_with(text, opts).to_string()
}

pub fn error_with(text: &str, opts: &LoadOptions) -> ConfigError {
    match parse_str("vmbuild.yaml", text, opts) {
        Ok(p) => panic!("expected an error, got a plan: {p:#?}"),
        Err(e) => e,
    }
}

/// A minimal valid header to put before `pipeline:`.
pub const HEADER: &str = "package:\n  name: hello\n  version: 1.0.0\n";

pub fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
