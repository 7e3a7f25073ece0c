//! `lookout check` on trigger rules: a placeholder inside `sh -c` is a warning, not an error
//! (the invalid rules are in tests/invalid_configs/trigger_*.toml, run by config_errors.rs).

use std::process::Command;

#[test]
fn placeholder_in_shell_script_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        r#"[[trigger]]
name = "disk"
metric = "disk.used_pct"
scope = "each"
above = 90
run = ["sh", "-c", "logger lookout {host} {instance}"]
"#,
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run lookout");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("disk: disk.used_pct above 90"), "{stdout}");
    assert!(
        stdout.contains(":6:7: trigger `disk`: `run`: a {placeholder} inside a shell's -c script"),
        "{stdout}"
    );
}
