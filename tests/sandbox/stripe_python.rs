//! The official `stripe` Python library against a running sandbox:
//! `tests/stripe_python/test_sandbox.py`. Without the library the test is
//! skipped with a message, except in CI (env `CI` set), where it fails.

use std::process::Command;

use crate::helpers::{SECRET_KEY, spawn_quick_disputes};

fn stripe_library_present() -> bool {
    Command::new("python3").args(["-c", "import stripe"]).output().map(|o| o.status.success()).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_stripe_python_library_works_against_the_sandbox() {
    if !stripe_library_present() {
        assert!(std::env::var_os("CI").is_none(), "CI must have the stripe Python package: pip install stripe");
        eprintln!("SKIPPED: the `stripe` Python package is not installed (pip install stripe)");
        return;
    }
    // Disputes open at once: the script waits for them.
    let sb = spawn_quick_disputes().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/stripe_python/test_sandbox.py");
    let base = sb.base.clone();
    // The script bounds its own run time (signal.alarm).
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).env("SANDBOX_URL", base).env("SANDBOX_SECRET_KEY", SECRET_KEY).output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ALL OK"), "stdout:\n{stdout}");
}
