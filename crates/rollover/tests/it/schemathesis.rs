//! Schemathesis, property-based tests generated from `/openapi.json`,
//! against the real server on each store: every operation, its status codes,
//! its response shapes, positive and negative data, and the stateful phase
//! that follows the document's links. No failure is allowed.
//!
//! `.ci/run` installs Schemathesis into `target/st-venv`
//! (`tests/schemathesis/requirements.txt`); the settings that say which
//! statuses count as rejecting or accepting data are in
//! `tests/schemathesis/schemathesis.toml`, each with its reason.


use std::process::Command;

use crate::server::{Backend, Server, TestStore};

const KEY: &str = "schemathesis-key-0123456789";

fn schemathesis_finds_nothing(backend: Backend) {
    let root = crate::common::repo_root();
    let st = root.join("target/st-venv/bin/st");
    assert!(st.exists(), "Schemathesis is installed in target/st-venv (.ci/run installs it)");
    let store = TestStore::new(backend);
    // The wall clock and the demo catalog and subscriptions, as a new user
    // starts it; an operator key, so that authorization is tested too.
    let server = Server::start_on(&store, &[("ROLLOVER_CLOCK", "wall"), ("ROLLOVER_DEMO", "true"), ("ROLLOVER_API_KEY", KEY)]);
    let workdir = std::env::temp_dir().join(format!("rollover-schemathesis-{}-{}", std::process::id(), store.url.len()));
    std::fs::create_dir_all(&workdir).unwrap();
    // One worker: with two, Hypothesis's lambda-source cache raced once
    // ("AST constructor recursion depth mismatch", a runtime error inside
    // the tool, not a finding about the server).
    let output = Command::new(&st)
        .current_dir(&workdir)
        .arg("--config-file")
        .arg(root.join("crates/rollover/tests/schemathesis/schemathesis.toml"))
        .args(["run", &format!("{}/openapi.json", server.base)])
        .args(["-H", &format!("Authorization: Bearer {KEY}")])
        .args(["--max-time", "30", "--workers", "1", "--seed", "20261201", "--request-timeout", "20"])
        .env("NO_COLOR", "1")
        .output()
        .expect("Schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.rsplit("SUMMARY").next().unwrap_or(&stdout);
    eprintln!("{summary}");
    assert!(output.status.success(), "Schemathesis found failures:\n{}\n{}", stdout.chars().take(20_000).collect::<String>(), String::from_utf8_lossy(&output.stderr));
    assert!(summary.contains("Stateful"), "the stateful phase ran: {summary}");
    assert!(!summary.contains("❌"), "{summary}");
    let _ = std::fs::remove_dir_all(&workdir);
}

on_both_stores!(schemathesis_finds_nothing);
