//! Built-in checks a user enables in one line (`[[check]] use = "systemd"`): each is a
//! POSIX sh command over standard tools, printing Nagios plugin output, so its status and
//! message follow the plugin conventions (README "Checks").

use super::Format;
use crate::model::Risk;

/// Parameters a recipe may take from its table.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pub port: Option<u16>,
    pub address: Option<String>,
    pub path: Option<String>,
}

pub struct Recipe {
    pub name: &'static str,
    pub format: Format,
    pub risk: Risk,
    pub unit: &'static str,
    pub command: fn(&Params) -> Result<String, String>,
}

pub const NAMES: &[&str] = &["systemd", "tcp", "cert", "disk"];

pub fn find(name: &str) -> Option<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name)
}

static RECIPES: &[Recipe] = &[
    Recipe {
        name: "systemd",
        format: Format::Nagios,
        risk: Risk::Higher,
        unit: "units",
        command: systemd,
    },
    Recipe {
        name: "tcp",
        format: Format::Nagios,
        risk: Risk::Higher,
        unit: "s",
        command: tcp,
    },
    Recipe {
        name: "cert",
        format: Format::Nagios,
        risk: Risk::Lower,
        unit: "days",
        command: cert,
    },
    Recipe {
        name: "disk",
        format: Format::Nagios,
        risk: Risk::Higher,
        unit: "%",
        command: disk,
    },
];

/// Whether a parameter may go into a command line (inside single quotes, but even so only
/// host names, addresses and paths are accepted).
pub fn safe_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-[]%".contains(&b))
        && !s.starts_with('-')
}

fn quoted(s: &str) -> String {
    super::run::shell_quote(s)
}

/// Failed units (`failed` = their count): CRITICAL when any has failed.
fn systemd(_: &Params) -> Result<String, String> {
    Ok(r#"command -v systemctl >/dev/null 2>&1 || { echo "SYSTEMD UNKNOWN - no systemctl on this host"; exit 3; }
u=$(systemctl list-units --state=failed --no-legend --plain --full 2>&1) || { echo "SYSTEMD UNKNOWN - $u" | head -n 1; exit 3; }
n=$(printf '%s\n' "$u" | grep -c .)
if [ "$n" -eq 0 ]; then echo "SYSTEMD OK - no failed units|failed=0"; exit 0; fi
echo "SYSTEMD CRITICAL - $n failed: $(printf '%s\n' "$u" | awk '{print $1}' | head -n 5 | tr '\n' ' ')|failed=$n"
exit 2"#
        .to_string())
}

fn address(p: &Params) -> String {
    p.address.clone().unwrap_or_else(|| "localhost".to_string())
}

fn port(p: &Params, recipe: &str) -> Result<u16, String> {
    p.port
        .ok_or_else(|| format!("the `{recipe}` recipe needs a `port`"))
}

/// Connect time to `address:port` (`time`, seconds): CRITICAL when refused.
fn tcp(p: &Params) -> Result<String, String> {
    let port = port(p, "tcp")?;
    Ok(format!(
        r#"a={a} p={port}
now() {{ t=$(date +%s%N 2>/dev/null); case $t in *[!0-9]*|'') echo 0;; *) echo $((t / 1000000));; esac; }}
s=$(now)
if command -v nc >/dev/null 2>&1; then nc -z -w 5 "$a" "$p" </dev/null >/dev/null 2>&1; r=$?
elif command -v bash >/dev/null 2>&1; then bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$a" "$p" </dev/null >/dev/null 2>&1; r=$?
else echo "TCP UNKNOWN - neither nc nor bash on this host"; exit 3; fi
ms=$(( $(now) - s ))
if [ "$r" -eq 0 ]; then echo "TCP OK - $a:$p accepts connections in ${{ms}}ms|time=${{ms}}ms"; exit 0; fi
echo "TCP CRITICAL - $a:$p does not accept connections"
exit 2"#,
        a = quoted(&address(p)),
    ))
}

/// Days until the TLS certificate on `address:port` expires (`days`): WARNING under 30,
/// CRITICAL under 7.
fn cert(p: &Params) -> Result<String, String> {
    let port = port(p, "cert")?;
    Ok(format!(
        r#"a={a} p={port}
command -v openssl >/dev/null 2>&1 || {{ echo "CERT UNKNOWN - no openssl on this host"; exit 3; }}
e=$(openssl s_client -connect "$a:$p" -servername "$a" </dev/null 2>/dev/null | openssl x509 -noout -enddate 2>/dev/null)
e=${{e#notAfter=}}
[ -n "$e" ] || {{ echo "CERT CRITICAL - no certificate from $a:$p"; exit 2; }}
x=$(date -d "$e" +%s 2>/dev/null) || {{ echo "CERT UNKNOWN - cannot read the date $e"; exit 3; }}
d=$(( (x - $(date +%s)) / 86400 ))
if [ "$d" -lt 7 ]; then s=CRITICAL r=2; elif [ "$d" -lt 30 ]; then s=WARNING r=1; else s=OK r=0; fi
echo "CERT $s - $a:$p expires in $d days ($e)|days=$d;30;7"
exit $r"#,
        a = quoted(&address(p)),
    ))
}

/// How full a filesystem is (`used_pct`, as df shows it): WARNING from 80%, CRITICAL from 90%.
fn disk(p: &Params) -> Result<String, String> {
    let path = p.path.clone().unwrap_or_else(|| "/".to_string());
    Ok(format!(
        r#"m={m}
l=$(df -P -k "$m" 2>&1 | tail -n 1) || {{ echo "DISK UNKNOWN - $l"; exit 3; }}
u=$(echo "$l" | awk '{{ sub("%", "", $5); print $5 }}')
case $u in ''|*[!0-9]*) echo "DISK UNKNOWN - $l"; exit 3;; esac
if [ "$u" -ge 90 ]; then s=CRITICAL r=2; elif [ "$u" -ge 80 ]; then s=WARNING r=1; else s=OK r=0; fi
echo "DISK $s - $m is $u% full|used_pct=$u%;80;90;0;100"
exit $r"#,
        m = quoted(&path),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::checks::parse::{Exit, judge};
    use crate::collectors::checks::run::local;
    use std::time::Duration;

    async fn run(name: &str, p: Params) -> crate::collectors::checks::parse::Verdict {
        let r = find(name).expect("recipe");
        let cmd = (r.command)(&p).expect("command");
        let o = local(&cmd, Duration::from_secs(10), 65536).await;
        assert!(matches!(o.exit, Exit::Code(_)), "{o:?}");
        judge(r.format, &o)
    }

    #[tokio::test]
    async fn disk_matches_df() {
        let v = run("disk", Params::default()).await;
        let df = std::process::Command::new("df")
            .args(["-P", "-k", "/"])
            .output()
            .expect("df");
        let line = String::from_utf8_lossy(&df.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .to_string();
        let pct: f64 = line
            .split_whitespace()
            .nth(4)
            .unwrap_or("")
            .trim_end_matches('%')
            .parse()
            .expect("pct");
        assert_eq!(v.values, vec![("used_pct".to_string(), pct)]);
        assert_eq!(
            v.status,
            if pct >= 90.0 {
                2
            } else if pct >= 80.0 {
                1
            } else {
                0
            },
            "{}",
            v.message
        );
        let v = run(
            "disk",
            Params {
                path: Some("/no/such/mount".into()),
                ..Params::default()
            },
        )
        .await;
        assert_eq!(v.status, 3, "{}", v.message);
    }

    #[tokio::test]
    async fn tcp_open_and_closed_ports() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let open = listener.local_addr().expect("addr").port();
        let v = run(
            "tcp",
            Params {
                port: Some(open),
                address: Some("127.0.0.1".into()),
                path: None,
            },
        )
        .await;
        assert_eq!(v.status, 0, "{}", v.message);
        assert_eq!(v.values.first().map(|v| v.0.as_str()), Some("time"));
        drop(listener);
        let v = run(
            "tcp",
            Params {
                port: Some(open),
                address: Some("127.0.0.1".into()),
                path: None,
            },
        )
        .await;
        assert_eq!(v.status, 2, "{}", v.message);
        assert!(v.values.is_empty());
    }

    #[tokio::test]
    async fn systemd_answers_a_status() {
        // This machine may not run systemd (a container): then the recipe says so.
        let v = run("systemd", Params::default()).await;
        if v.status == 3 {
            assert!(v.message.starts_with("SYSTEMD UNKNOWN"), "{}", v.message);
        } else {
            assert_eq!(
                v.values.first().map(|v| v.0.as_str()),
                Some("failed"),
                "{}",
                v.message
            );
        }
    }

    #[tokio::test]
    async fn cert_days_from_a_real_tls_server() {
        let dir = tempfile::tempdir().expect("tmp");
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "100",
                "-subj",
                "/CN=localhost",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl (apt-get install -y openssl)");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _server = Kill(
            std::process::Command::new("openssl")
                .args(["s_server", "-quiet", "-accept", &format!("127.0.0.1:{port}")])
                .arg("-cert")
                .arg(&cert)
                .arg("-key")
                .arg(&key)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("s_server"),
        );
        let params = || Params {
            port: Some(port),
            address: Some("127.0.0.1".into()),
            path: None,
        };
        let mut v = run("cert", params()).await;
        for _ in 0..50 {
            if v.status != 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            v = run("cert", params()).await;
        }
        assert_eq!(v.status, 0, "{}", v.message);
        let days = v.values.first().map(|d| d.1).unwrap_or(-1.0);
        assert!((99.0..=100.0).contains(&days), "{days}: {}", v.message);
    }

    #[test]
    fn parameters_are_checked() {
        assert!(safe_word("db-1.example.com"));
        assert!(safe_word("[::1]"));
        assert!(!safe_word("a;rm -rf /"));
        assert!(!safe_word("$(id)"));
        assert!(!safe_word("-oProxyCommand"));
        assert!((find("tcp").expect("tcp").command)(&Params::default()).is_err());
    }
}
