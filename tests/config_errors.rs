//! Every tests/invalid_configs/NAME.toml (and NAME/main.toml, for a config split over
//! files) must make `lookout check` exit 2 and print exactly NAME.err on stderr;
//! sample.toml, a split config and an empty config must pass.

use std::path::Path;
use std::process::Command;

fn lookout() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lookout"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    // Never pick up the developer's own config.
    c.env("XDG_CONFIG_HOME", "/nonexistent-lookout-test");
    c
}

#[test]
fn invalid_configs_give_exact_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid_configs");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml") || p.join("main.toml").is_file())
    {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let rel = if path.is_dir() {
            format!("tests/invalid_configs/{name}/main.toml")
        } else {
            format!("tests/invalid_configs/{name}")
        };
        let expected = std::fs::read_to_string(path.with_extension("err"))
            .unwrap_or_else(|_| panic!("{rel} has no .err file beside it"));
        let out = lookout()
            .args(["check", "--config", &rel])
            .output()
            .expect("run lookout");
        assert_eq!(out.status.code(), Some(2), "{rel}: exit status");
        assert_eq!(String::from_utf8_lossy(&out.stderr), expected, "{rel}: stderr");
        assert!(out.stdout.is_empty(), "{rel}: nothing on stdout");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} invalid configs found");
}

#[test]
fn sample_config_passes_check() {
    let out = lookout()
        .args(["check", "--config", "sample.toml"])
        .output()
        .expect("run lookout");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sample.toml: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sample.toml: ok"), "{stdout}");
    assert!(
        !stdout.contains("warning:"),
        "sample.toml must not warn: {stdout}"
    );
}

#[test]
fn no_config_watches_the_local_host() {
    let out = lookout().arg("check").output().expect("run lookout");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.starts_with("built-in default: ok"), "{stdout}");
    assert!(stdout.contains("(local)"), "{stdout}");
    assert!(stdout.contains("(built-in defaults)"), "{stdout}");
}

#[test]
fn missing_file_is_an_error() {
    let out = lookout()
        .args(["check", "--config", "does-not-exist.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does-not-exist.toml: cannot read the config file"),
        "{err}"
    );
}

#[test]
fn a_split_config_reads_every_file_in_order() {
    let out = lookout()
        .args(["check", "--config", "tests/fixtures/split_config/main.toml"])
        .output()
        .expect("run lookout");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The main file's hosts first, then conf.d in sorted order (10-web before 20-db), with
    // web.d's watch list applied to the web group.
    let hosts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("    ") && l.contains(" (") && !l.contains(" for "))
        .collect();
    assert_eq!(
        hosts,
        [
            "    localhost (local)",
            "    web1 (ssh, group web) processes: nginx",
            "    web2 (ssh, group web) processes: nginx",
            "    db1 (ping, group db)",
        ],
        "{stdout}"
    );
    assert!(stdout.contains("  2 triggers:\n"), "{stdout}");
    assert!(stdout.contains("    nginx down: proc.count below 1"), "{stdout}");
    assert!(stdout.contains("    db unreachable: host.up below 1"), "{stdout}");
}
