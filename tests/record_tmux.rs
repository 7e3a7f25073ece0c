//! Rewind and replay end to end: the real dashboard in tmux (own socket, 160x45) records a
//! story (a watched process killed, its trigger firing); the rewind keys bring back the
//! moment before, with the header saying so, Esc returns live; then `lookout replay` plays
//! the recording with no collectors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn start(dir: &Path, socket: &str, cmd: &str) -> Tmux {
        let t = Tmux {
            socket: dir.join(socket),
        };
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
            cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux: {}",
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
        self.tmux(&["send-keys", "-t", "s", "-l", "--", text]);
    }

    fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                // The capture may fall inside a frame being written: check a second one.
                std::thread::sleep(Duration::from_millis(150));
                let again = self.screen();
                if ok(&again) {
                    return again;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; the screen was:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn header(screen: &str) -> &str {
    screen.lines().next().unwrap_or("")
}

const TRIGGER: &str = "story process down";

fn firing(screen: &str) -> bool {
    screen.lines().any(|l| l.contains(TRIGGER) && l.contains("CRIT"))
}

#[test]
fn rewind_keys_show_the_recorded_moment_and_esc_returns_live() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = dir.path().join("rec");
    let name = format!("lkt{}", std::process::id() % 100_000);
    let bin = dir.path().join(&name);
    std::fs::copy("/bin/sleep", &bin).expect("copy sleep");
    let worker = Reaped(
        Command::new(&bin)
            .arg("120")
            .spawn()
            .expect("start the watched process"),
    );
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[general]
interval = "500ms"
[[hosts]]
names = ["me"]
via = "local"
[[watch.processes]]
hosts = ["*"]
names = ["{name}"]
[record]
dir = "{}"
[[trigger]]
name = "{TRIGGER}"
metric = "proc.count"
scope = "each"
instance = "{name}"
below = 1
for = "1s"
severity = "critical"
"#,
            rec.display()
        ),
    )
    .expect("write config");
    let lookout = env!("CARGO_BIN_EXE_lookout");
    let t = Tmux::start(
        dir.path(),
        "live.sock",
        &format!("{lookout} --config {}; echo EXITED; exec sh", config.display()),
    );
    t.wait_for("the dashboard", Duration::from_secs(15), |s| {
        s.contains("1 host: 1 up")
    });
    std::thread::sleep(Duration::from_secs(4));
    drop(worker);
    let live = t.wait_for("the trigger to fire", Duration::from_secs(10), firing);
    assert!(!header(&live).contains("REWIND"));

    // Back to before the kill: the trigger was not firing then.
    t.keys(&["t"]);
    t.wait_for("the time prompt", Duration::from_secs(5), |s| {
        s.contains("rewind to:")
    });
    t.literal("-5s");
    t.keys(&["Enter"]);
    let past = t.wait_for("the REWIND header", Duration::from_secs(5), |s| {
        header(s).contains("REWIND")
    });
    assert!(
        header(&past).contains("(-5s)") || header(&past).contains("(-6s)"),
        "{}",
        header(&past)
    );
    assert!(
        !firing(&past),
        "the trigger was not firing five seconds ago:\n{past}"
    );

    // One interval forward: still rewound, half a second later.
    t.keys(&["]"]);
    t.wait_for("a step forward", Duration::from_secs(5), |s| {
        header(s).contains("REWIND")
            && !header(s).contains(header(&past).split("REWIND").nth(1).unwrap_or("?"))
    });
    // Five minutes back is before the recording began: said plainly, nothing else moves.
    t.keys(&["{"]);
    let s = t.wait_for("the span message", Duration::from_secs(5), |s| {
        s.contains("outside the recorded span")
    });
    assert!(header(&s).contains("REWIND"));

    // Esc: live again, the trigger firing.
    t.keys(&["Escape"]);
    let back = t.wait_for("live data", Duration::from_secs(5), |s| {
        !header(s).contains("REWIND")
    });
    assert!(firing(&back), "{back}");
    // `[` steps back from live.
    t.keys(&["["]);
    t.wait_for("one step back", Duration::from_secs(5), |s| {
        header(s).contains("REWIND")
    });
    t.keys(&["q"]);
    t.wait_for("the dashboard to quit", Duration::from_secs(10), |s| {
        s.contains("EXITED")
    });

    // Replay the recording: no collectors, the header says REPLAY.
    drop(t);
    let t = Tmux::start(
        dir.path(),
        "replay.sock",
        &format!(
            "{lookout} replay {} --speed 2; echo EXITED; exec sh",
            rec.display()
        ),
    );
    let s = t.wait_for("the replay", Duration::from_secs(15), |s| {
        header(s).contains("REPLAY")
    });
    assert!(s.contains("1 host: 1 up"), "{s}");
    t.wait_for(
        "the trigger to fire in the replay",
        Duration::from_secs(20),
        firing,
    );
    t.keys(&["q"]);
    t.wait_for("the replay to quit", Duration::from_secs(10), |s| {
        s.contains("EXITED")
    });
}
