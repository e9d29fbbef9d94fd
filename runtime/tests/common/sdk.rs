//! The official Trigger.dev SDK (`@trigger.dev/sdk`, pinned in `conformance/package-lock.json`)
//! run by Node.js against a server a test started: the packages are installed (`npm ci`) on
//! the first run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The folder of the scripts and their packages.
pub fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance")
}

/// Installs the pinned packages unless they are there (one test at a time).
fn install(dir: &Path) {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if dir
        .join("node_modules/@trigger.dev/sdk/package.json")
        .exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "`npm ci` in {} could not start ({e}): install Node.js 20+ and npm",
                dir.display()
            )
        });
    assert!(status.success(), "`npm ci` in {} failed", dir.display());
}

/// Runs `script` (in `conformance/`) with Node.js and these environment variables, and
/// returns the one JSON value it prints. Blocks: call it from `spawn_blocking`.
pub fn run(script: &str, env: &[(&str, String)]) -> Value {
    let dir = conformance_dir();
    install(&dir);
    let output = Command::new("node")
        .arg(script)
        .current_dir(&dir)
        .envs(env.iter().map(|(name, value)| (*name, value)))
        .output()
        .unwrap_or_else(|e| panic!("node could not start ({e}): install Node.js 20+"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}
