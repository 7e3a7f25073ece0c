//! `lookout check` validates the dashboard's key bindings and theme like the rest of the
//! config: every error located, exit status 2.

use std::process::Command;

fn check(config: &str, extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(extra)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run lookout");
    let text = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "config.toml");
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn bad_bindings_are_reported_with_locations() {
    let (code, err) = check(
        "[keys]\nqiut = \"q\"\nhelp = [\"h\", \"entr\"]\nlog = \"h\"\n",
        &[],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        "error: config.toml:2:1: unknown action `qiut` in [keys] — did you mean `quit`?\n\
         error: config.toml:3:14: in [keys] help: cannot read the key `entr` — did you mean `enter`?\n\
         error: config.toml:4:7: key `h` is bound to both `help` and `log` in [keys]"
    );
}

#[test]
fn good_bindings_and_themes_pass() {
    let (code, err) = check(
        "[general]\ntheme = \"light\"\n[keys]\nquit = [\"Q\", \"ctrl-q\"]\n",
        &[],
    );
    assert_eq!((code, err.as_str()), (0, ""));
    let (code, err) = check("", &["--theme", "hight-contrast"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown theme `hight-contrast` — did you mean `high-contrast`?"),
        "{err}"
    );
}
