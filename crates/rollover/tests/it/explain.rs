//! Snapshot tests for `rollover plan explain` in both languages: the text
//! people read is reviewed as text. Update with `UPDATE_EXPECT=1`.


use crate::common::{repo_root, rollover, shared_scenarios, toml_files};
use expect_test::expect_file;

fn plan_ids(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("id = \""))
        .map(|rest| rest.trim_end_matches('"').to_string())
        .collect()
}

#[test]
fn demo_plans_explained_in_english_and_chinese() {
    let file = repo_root().join("plans/demo.toml");
    let file = file.to_str().unwrap();
    let ids = plan_ids(file);
    assert!(ids.len() >= 6);
    for id in ids {
        for lang in ["en", "zh"] {
            let out = rollover(&["plan", "explain", file, "--plan", &id, "--lang", lang]);
            assert_eq!(out.code, 0, "{}", out.stderr);
            expect_file![format!("snapshots/{id}.{lang}.txt")].assert_eq(&out.stdout);
        }
    }
}

/// The plans of every scenario, the shared ones and ours: among them plans
/// whose carried data never expires and prices of one cent.
#[test]
fn scenario_plans_explained() {
    for file in toml_files(&shared_scenarios()).into_iter().chain(toml_files(&repo_root().join("scenarios"))) {
        let name = file.file_stem().unwrap().to_str().unwrap().to_string();
        for lang in ["en", "zh"] {
            let out = rollover(&["plan", "explain", file.to_str().unwrap(), "--lang", lang]);
            assert_eq!(out.code, 0, "{}", out.stderr);
            expect_file![format!("snapshots/scenario-{name}.{lang}.txt")].assert_eq(&out.stdout);
        }
    }
}

#[test]
fn explain_answers_the_carry_over_question_first() {
    let file = repo_root().join("plans/demo.toml");
    let out = rollover(&["plan", "explain", file.to_str().unwrap(), "--plan", "cn-30g"]);
    let first_question = out.stdout.lines().find(|l| l.ends_with('?')).unwrap();
    assert_eq!(first_question, "Does unused data carry over to next month?");
    let out = rollover(&["plan", "explain", file.to_str().unwrap(), "--plan", "cn-30g", "--lang", "zh"]);
    let first_question = out.stdout.lines().find(|l| l.ends_with('？')).unwrap();
    assert_eq!(first_question, "流量可以结转到下个月吗？");
}

#[test]
fn explain_unknown_plan_id_exits_2() {
    let file = repo_root().join("plans/demo.toml");
    let out = rollover(&["plan", "explain", file.to_str().unwrap(), "--plan", "nope"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no plan with id \"nope\""), "{}", out.stderr);
}
