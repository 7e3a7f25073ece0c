//! End to end: the real binary in a real terminal (tmux on its own socket, 160x45), driven
//! by keys as a person would, the screen read back with `capture-pane` after every step.
//! Works without a terminal on stdin (CI): tmux provides the pseudo-terminal.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Tmux {
    fn start(config_text: &str) -> Tmux {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("tmux.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_text).expect("write config");
        let t = Tmux {
            socket,
            _dir: dir,
            config,
        };
        let cmd = format!(
            "{} --config {}; echo EXITED; exec sh",
            env!("CARGO_BIN_EXE_lookout"),
            t.config.display()
        );
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "s",
            "-x",
            "160",
            "-y",
            "45",
            "-e",
            "PS1=$ ",
            "sh",
            "-c",
            &cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.tmux(&["set-option", "-t", "s", "remain-on-exit", "on"]);
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux is installed (apt-get install tmux)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "s"]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "s"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    fn literal(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "s", "-l", text]);
    }

    fn display(&self, format: &str) -> String {
        String::from_utf8_lossy(&self.tmux(&["display-message", "-p", "-t", "s", format]).stdout)
            .trim()
            .to_string()
    }

    /// Waits until the screen satisfies `ok`; panics with the last screen otherwise.
    fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                // A capture can fall in the middle of a frame being written: take the
                // screen once more, so the caller's assertions see a whole frame.
                std::thread::sleep(Duration::from_millis(150));
                let again = self.screen();
                if ok(&again) {
                    return again;
                }
            }
            if start.elapsed() > timeout {
                panic!("timed out waiting for {what}; the screen was:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of the dashboard: the child of the pane's shell.
    fn lookout_pid(&self) -> u32 {
        let sh = self.display("#{pane_pid}");
        let children = std::fs::read_to_string(format!("/proc/{sh}/task/{sh}/children")).unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("lookout runs under the pane's shell")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

const CONFIG: &str = r#"
[general]
interval = "1s"

[[hosts]]
names = ["alpha", "beta"]
group = "here"
via = "local"
"#;

fn host_row<'a>(screen: &'a str, host: &str) -> Option<&'a str> {
    screen.lines().find(|l| {
        l.strip_prefix('│').is_some_and(|rest| {
            rest.trim_start_matches([' ', '▶'])
                .starts_with(&format!("{host} "))
        })
    })
}

/// After the dashboard ends the shell is back: no alternate screen, and the line
/// discipline is out of raw mode (the shell's `stty` shows `icanon` and `echo`).
fn assert_restored(t: &Tmux) {
    t.wait_for("the shell after lookout", Duration::from_secs(10), |s| {
        s.contains("EXITED")
    });
    assert_eq!(t.display("#{alternate_on}"), "0", "still on the alternate screen");
    t.literal(
        "stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo -e -icanon -e -echo | sort | tr '\\n' ' '; echo",
    );
    t.keys(&["Enter"]);
    // Sorted, a cooked terminal prints exactly `echo icanon`; raw mode `-echo -icanon`.
    let s = t.wait_for("stty output", Duration::from_secs(10), |s| {
        s.lines()
            .any(|l| l.trim() == "echo icanon" || l.trim() == "-echo -icanon")
    });
    assert!(
        s.lines().any(|l| l.trim() == "echo icanon"),
        "raw mode left on:\n{s}"
    );
    assert!(
        !s.contains("Maximal risk"),
        "the dashboard is still on screen:\n{s}"
    );
}

#[test]
fn a_person_at_the_keyboard() {
    let t = Tmux::start(CONFIG);
    let s = t.wait_for("data for both hosts", Duration::from_secs(20), |s| {
        s.contains("2 hosts: 2 up")
            && s.contains("data ")
            && ["alpha", "beta"]
                .iter()
                .all(|h| host_row(s, h).is_some_and(|r| r.contains(" up ") && r.contains('.')))
    });
    assert!(
        s.contains("Hosts (2)") && s.contains("Maximal risk") && s.contains("Triggers"),
        "{s}"
    );
    assert!(
        host_row(&s, "alpha").is_some_and(|r| r.contains("▶alpha")),
        "alpha selected first:\n{s}"
    );
    assert!(s.contains("? help") && s.contains("q quit"), "hint line:\n{s}");

    t.keys(&["j"]);
    let s = t.wait_for("beta selected", Duration::from_secs(5), |s| {
        host_row(s, "beta").is_some_and(|r| r.contains("▶beta"))
    });
    assert!(!host_row(&s, "alpha").is_some_and(|r| r.contains('▶')));

    t.keys(&["Enter"]);
    let s = t.wait_for("beta's detail", Duration::from_secs(5), |s| {
        // The hint line is written last: a capture taken halfway through the frame holds
        // the detail's top over the overview's bottom.
        s.contains("┌beta (here)") && s.contains("Watched processes") && s.contains("Esc back")
    });
    assert!(
        s.contains("status up") && s.contains("via local") && s.contains("Disks") && s.contains("Interfaces"),
        "{s}"
    );
    assert!(s.contains("Esc back"), "{s}");

    t.keys(&["Escape"]);
    t.wait_for("the overview again", Duration::from_secs(5), |s| {
        s.contains("Hosts (2)") && !s.contains("Watched processes")
    });

    t.keys(&["/"]);
    t.wait_for("the filter prompt", Duration::from_secs(5), |s| {
        s.contains("filter: ▏")
    });
    t.literal("alp");
    let s = t.wait_for("the filtered table", Duration::from_secs(5), |s| {
        s.contains("Hosts (1 of 2, filter: alp)")
    });
    assert!(
        host_row(&s, "alpha").is_some() && host_row(&s, "beta").is_none(),
        "{s}"
    );
    assert!(s.contains("filter: alp▏") && s.contains("1 match"), "{s}");

    t.keys(&["Escape"]);
    let s = t.wait_for("the filter cleared", Duration::from_secs(5), |s| {
        s.contains("Hosts (2)")
    });
    assert!(host_row(&s, "beta").is_some(), "{s}");

    t.keys(&["?"]);
    let s = t.wait_for("the help", Duration::from_secs(5), |s| {
        s.contains("Keys") && s.contains("this help")
    });
    assert!(
        s.contains("acknowledge the selected trigger") && s.contains("Shift-Tab"),
        "{s}"
    );

    t.keys(&["q"]);
    assert_restored(&t);
}

fn signal_restores_the_terminal(signal: &str) {
    let t = Tmux::start(CONFIG);
    t.wait_for("the dashboard", Duration::from_secs(20), |s| {
        s.contains("Hosts (2)")
    });
    let pid = t.lookout_pid();
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(ok.success());
    assert_restored(&t);
}

#[test]
fn sigterm_restores_the_terminal() {
    signal_restores_the_terminal("TERM");
}

#[test]
fn sighup_restores_the_terminal() {
    signal_restores_the_terminal("HUP");
}

#[test]
fn sigint_restores_the_terminal() {
    signal_restores_the_terminal("INT");
}

#[test]
fn no_terminal_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, CONFIG).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run lookout");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the dashboard needs a terminal"), "{err}");
}
