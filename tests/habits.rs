//! The terminal user's habits: `lookout init` on a fresh HOME, completion scripts that
//! load in a real bash, and a man page the real `man -l` renders.

use std::process::{Command, Stdio};

fn lookout(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("lookout")
}

#[test]
fn init_on_a_fresh_home_writes_a_valid_config_once() {
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir(home.path().join(".ssh")).expect("mkdir");
    std::fs::write(
        home.path().join(".ssh/config"),
        "Host web1 web2\n  User deploy\nHost db-*\n  Port 2200\nHost db1\nHost *\n  ServerAliveInterval 10\n",
    )
    .expect("ssh config");
    let out = lookout(home.path(), &["init"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = home.path().join(".config/lookout/config.toml");
    let text = std::fs::read_to_string(&path).expect("written at the XDG path");
    assert!(
        text.contains("\"web1\"") && text.contains("\"db1\"") && !text.contains("db-*"),
        "{text}"
    );
    assert!(
        text.lines().filter(|l| l.starts_with('#')).count() > 10,
        "commented"
    );
    // `lookout check` (which now finds the file by itself) accepts it.
    let check = lookout(home.path(), &["check"]);
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(said.contains("web1 -> deploy@web1:22"), "{said}");
    // Never overwritten.
    std::fs::write(&path, "# mine\n").expect("edit");
    let again = lookout(home.path(), &["init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), "# mine\n");
}

#[test]
fn completions_load_in_bash_and_the_others_generate() {
    let bin = env!("CARGO_BIN_EXE_lookout");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <('{bin}' completions bash) && complete -p lookout"
        ))
        .output()
        .expect("bash");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("-F _lookout lookout"), "{said}");
    // The bash function completes subcommands.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <('{bin}' completions bash); COMP_WORDS=(lookout sn); COMP_CWORD=1; _lookout lookout sn lookout; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        ))
        .output()
        .expect("bash");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == "snapshot")
    );
    for shell in ["zsh", "fish"] {
        let out = Command::new(bin)
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success() && out.stdout.len() > 500, "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("all-ssh-hosts"),
            "{shell}"
        );
    }
}

#[test]
fn man_renders_the_page() {
    let dir = tempfile::tempdir().expect("tmp");
    let page = dir.path().join("lookout.1");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("manpage")
        .output()
        .expect("manpage");
    assert!(out.status.success());
    std::fs::write(&page, &out.stdout).expect("write");
    let man = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .stdin(Stdio::null())
        .output()
        .expect("man (apt-get install man-db)");
    let text = String::from_utf8_lossy(&man.stdout);
    let err = String::from_utf8_lossy(&man.stderr);
    assert!(man.status.success(), "{err}");
    assert!(err.trim().is_empty(), "roff warnings: {err}");
    for want in [
        "NAME",
        "SYNOPSIS",
        "COMMANDS",
        "lookout check",
        "--all-ssh-hosts",
        "lookout completions",
        "FILES",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}
