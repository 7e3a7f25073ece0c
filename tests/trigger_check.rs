//! `lookout check` on trigger rules: every tests/invalid_configs/trigger_*.toml gives exactly
//! its .err on stderr and exit 2; a placeholder inside `sh -c` is a warning, not an error.

use std::process::Command;

#[test]
fn invalid_trigger_configs_give_their_errors() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(root).join("tests/invalid_configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/invalid_configs") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if !(name.starts_with("trigger_") && name.ends_with(".toml")) {
            continue;
        }
        let rel = format!("tests/invalid_configs/{name}");
        let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["check", "--config", &rel])
            .current_dir(root)
            .output()
            .expect("run lookout");
        let want = std::fs::read_to_string(path.with_extension("err")).expect(".err file");
        assert_eq!(String::from_utf8_lossy(&out.stderr), want, "{rel}");
        assert_eq!(out.status.code(), Some(2), "{rel}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures");
}

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
