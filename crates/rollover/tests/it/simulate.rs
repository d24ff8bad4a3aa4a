//! `rollover simulate` and `rollover plan check` through the real binary.


use crate::common::{repo_root, rollover, shared_scenarios, temp_file, toml_files};

#[test]
fn every_shared_scenario_passes() {
    let files = toml_files(&shared_scenarios());
    assert!(files.len() >= 4, "expected the shared acceptance scenarios, found {}", files.len());
    for file in files {
        let out = rollover(&["simulate", file.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{}:\n{}{}", file.display(), out.stdout, out.stderr);
        assert!(out.stdout.is_empty(), "no mismatch lines for a passing scenario: {}", out.stdout);
    }
}

#[test]
fn every_own_scenario_passes() {
    let files = toml_files(&repo_root().join("scenarios"));
    assert!(files.len() >= 10, "expected at least ten of our own scenarios, found {}", files.len());
    for file in files {
        let out = rollover(&["simulate", file.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{}:\n{}{}", file.display(), out.stdout, out.stderr);
    }
}

#[test]
fn a_broken_expect_exits_1_with_one_line_per_mismatch() {
    let original = std::fs::read_to_string(shared_scenarios().join("cn-monthly-rollover.toml")).unwrap();
    let broken = original
        .replace(r#"{ kind = "allowance", remaining = "10240MiB", expires = "2026-02-01T00:00:00+08:00" }"#, r#"{ kind = "allowance", remaining = "10000MiB" }"#)
        .replace(r#"fees = "116.00""#, r#"fees = "117.00""#)
        .replace(r#"status = "active""#, r#"status = "throttled""#);
    assert_ne!(original, broken);
    let path = temp_file("broken.toml", &broken);
    let out = rollover(&["simulate", path.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "expect #1 at 2026-01-31T23:59:59+08:00: buckets expected [{kind=allowance, remaining=10000MiB}], got [{kind=allowance, remaining=10240MiB, expires=2026-02-01T00:00:00+08:00}]",
            "expect #2 at 2026-02-01T00:00:00+08:00: fees expected 117.00, got 116.00",
            "expect #5 at 2026-03-15T20:00:00+08:00: status expected throttled, got active",
        ]
    );
}

#[test]
fn json_prints_the_state_at_every_expect_and_is_stable() {
    let file = shared_scenarios().join("overage-extra-blocks.toml");
    let first = rollover(&["simulate", "--json", file.to_str().unwrap()]);
    let second = rollover(&["simulate", "--json", file.to_str().unwrap()]);
    assert_eq!(first.code, 0);
    assert_eq!(first.stdout, second.stdout, "the same input gives byte-identical JSON");
    let value: serde_json::Value = serde_json::from_str(&first.stdout).expect("valid JSON");
    assert_eq!(value["ok"], true);
    let expects = value["expects"].as_array().unwrap();
    assert_eq!(expects.len(), 4);
    let last = &expects[3];
    assert_eq!(last["at"], "2026-10-01T00:00:00+10:00");
    assert_eq!(last["state"]["status"], "active");
    assert_eq!(last["state"]["charges"], "20.00");
    assert_eq!(last["state"]["fees"], "60.00");
    assert_eq!(last["state"]["buckets"][0]["kind"], "allowance");
    assert_eq!(last["state"]["buckets"][0]["remaining"], 5u64 << 30);
    assert_eq!(last["state"]["buckets"][0]["expires"], "2026-11-01T00:00:00+11:00");
    assert_eq!(last["state"]["forfeited"][0]["kind"], "extra");
    assert_eq!(last["state"]["forfeited"][0]["data"], 324u64 << 20);
    assert_eq!(last["state"]["forfeited"][0]["cause"], "expired");
}

#[test]
fn json_marks_failed_expects() {
    let original = std::fs::read_to_string(shared_scenarios().join("travel-daily-cap.toml")).unwrap();
    let path = temp_file("travel.toml", &original.replace(r#"throttled = "176MiB""#, r#"throttled = "175MiB""#));
    let out = rollover(&["simulate", "--json", path.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(value["ok"], false);
    let failed: Vec<&serde_json::Value> = value["expects"].as_array().unwrap().iter().filter(|e| e["ok"] == false).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["mismatches"][0]["field"], "throttled");
    assert_eq!(failed[0]["mismatches"][0]["expected"], "175MiB");
    assert_eq!(failed[0]["mismatches"][0]["got"], "176MiB");
}

#[test]
fn ledger_explains_every_byte() {
    let file = shared_scenarios().join("cn-monthly-rollover.toml");
    let out = rollover(&["simulate", "--ledger", file.to_str().unwrap()]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("2026-02-01T00:00:00+08:00  bucket 1 (allowance): carried 10GiB into bucket 2"), "{}", out.stdout);
    assert!(out.stdout.contains("2026-03-01T00:00:00+08:00  bucket 2 (carry): forfeited 6GiB (expired)"), "{}", out.stdout);
}

#[test]
fn plan_check_accepts_plan_files_and_scenarios() {
    let plans = repo_root().join("plans/demo.toml");
    let out = rollover(&["plan", "check", plans.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.ends_with("plans valid\n"), "{}", out.stdout);
    let scenario = shared_scenarios().join("cn-monthly-rollover.toml");
    let out = rollover(&["plan", "check", scenario.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.ends_with(": 1 plan valid\n"), "{}", out.stdout);
}

#[test]
fn missing_file_exits_2() {
    let out = rollover(&["simulate", "/nonexistent/scenario.toml"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.starts_with("/nonexistent/scenario.toml: cannot read"), "{}", out.stderr);
}

/// The time-zone database is built in: with the host's hidden (as in a
/// distroless image), a scenario in Asia/Shanghai still runs and passes.
#[test]
fn time_zones_do_not_come_from_the_host() {
    let file = shared_scenarios().join("cn-monthly-rollover.toml");
    let script = format!("mount -t tmpfs none /usr/share/zoneinfo && exec {} simulate {}", env!("CARGO_BIN_EXE_rollover"), file.display());
    let output = std::process::Command::new("unshare").args(["--mount", "sh", "-c", &script]).output().expect("unshare runs (util-linux)");
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
}
