//! `lookout test`: the shipped rule tests for the built-in default rules pass (exit 0);
//! failing ones print each failed expectation and exit 1.

use std::process::Command;

fn lookout_test(files: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("XDG_CONFIG_HOME", "/nonexistent-lookout-test")
        .arg("test")
        .args(files)
        .output()
        .expect("run lookout");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn default_rules_pass_their_tests() {
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rules"))
        .expect("tests/rules")
        .flatten()
        .map(|e| format!("tests/rules/{}", e.file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = lookout_test(&args);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "tests/rules/defaults.toml: ok (14 expectations)\ntests/rules/load.toml: ok (7 expectations)\n"
    );
}

#[test]
fn failing_rule_tests_print_each_failure_and_exit_1() {
    let (code, stdout, stderr) = lookout_test(&[
        "tests/rules/load.toml",
        "tests/rules_failing/wrong.toml",
        "tests/rules_failing/typo.toml",
        "tests/rules_failing/missing.toml",
    ]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "tests/rules/load.toml: ok (7 expectations)\n\
         tests/rules_failing/wrong.toml: at 1s: cpu hot @alpha: expected firing, got pending (value 95)\n\
         tests/rules_failing/wrong.toml: at 3s: cpu hot: expected resolved, got firing (value 95)\n\
         tests/rules_failing/wrong.toml: at 3s: expected actions [\"cpu hot @alpha: resolved\"], got [\"cpu hot @alpha: firing\"]\n\
         tests/rules_failing/wrong.toml: FAILED (3 of 3 expectations)\n\
         tests/rules_failing/typo.toml: error: no trigger is named `host dwn` — did you mean `host down`?\n\
         tests/rules_failing/missing.toml: error: cannot read the test file: No such file or directory (os error 2)\n"
    );
}
