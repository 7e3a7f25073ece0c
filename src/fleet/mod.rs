//! The fleet simulator behind `lookout-fleet`: one process serving many simulated Linux hosts
//! over real SSH (russh's server side) on distinct loopback addresses, for tests and scale
//! benchmarks. It writes what lookout needs to watch them — a lookout config, an ssh config,
//! known_hosts and a client key — so `lookout --config DIR/fleet.toml` works as against real
//! servers, host key checks included.
//!
//! A host is `up` (answers lookout's command), `down` (nothing listens: connection refused),
//! `hung` (accepts the connection and never says a word) or `reset` (accepts and resets the
//! connection). Which hosts are which is drawn from a seed and written to `DIR/hosts.tsv`;
//! with `--flap`, hosts change modes as the run goes on (see [`flap`]) and the file follows.

pub mod flap;
pub mod probe;
pub mod server;
pub mod sim;

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use tokio::net::TcpListener;

use sim::{HostSim, Profile};

/// How one simulated host behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    Up,
    Down,
    Hung,
    Reset,
}

impl HostMode {
    pub fn as_str(self) -> &'static str {
        match self {
            HostMode::Up => "up",
            HostMode::Down => "down",
            HostMode::Hung => "hung",
            HostMode::Reset => "reset",
        }
    }
}

/// Delays added to every answer.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    pub latency: Duration,
    /// A random extra delay of up to this much.
    pub jitter: Duration,
}

/// Everything `lookout-fleet serve` is told.
#[derive(Debug, Clone)]
pub struct Options {
    pub hosts: usize,
    pub dir: PathBuf,
    /// 0: the system picks a free port (the same one for every host).
    pub port: u16,
    /// The first host's address; the others follow (skipping .0 and .255).
    pub first: Ipv4Addr,
    pub down: f64,
    pub hung: f64,
    pub reset: f64,
    pub knobs: Knobs,
    pub profile: Profile,
    pub seed: u64,
    /// Written into the lookout config.
    pub interval: Duration,
    pub connect_timeout: Duration,
    /// Process names the lookout config watches on every host (none: no process listing).
    pub watch: Vec<String>,
    /// Name hosts by address instead of by `fleet-NNNN` aliases of the ssh config.
    pub by_address: bool,
    /// `[[check]]`s the lookout config runs on every host (the simulator answers them).
    pub checks: usize,
    pub check_interval: Duration,
    /// Hosts change modes this often (none: modes are fixed).
    pub flap: Option<Duration>,
    /// The share of hosts that change at each flap.
    pub flap_share: f64,
    /// Flapping stops after this long (modes then stay as they are).
    pub flap_for: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hosts: 10,
            dir: PathBuf::from("fleet"),
            port: 2222,
            first: Ipv4Addr::new(127, 42, 0, 1),
            down: 0.0,
            hung: 0.0,
            reset: 0.0,
            knobs: Knobs::default(),
            profile: Profile::default(),
            seed: 1,
            interval: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(10),
            watch: vec!["nginx".into(), "python3".into()],
            by_address: false,
            checks: 0,
            check_interval: Duration::from_secs(10),
            flap: None,
            flap_share: 0.05,
            flap_for: None,
        }
    }
}

/// One simulated host's identity.
#[derive(Debug, Clone)]
pub struct HostEntry {
    pub name: String,
    pub addr: Ipv4Addr,
    pub mode: HostMode,
}

/// The addresses of `n` hosts from `first` on, skipping network and broadcast-looking ones.
pub fn addresses(first: Ipv4Addr, n: usize) -> anyhow::Result<Vec<Ipv4Addr>> {
    let mut out = Vec::with_capacity(n);
    let mut a = u32::from(first);
    while out.len() < n {
        let ip = Ipv4Addr::from(a);
        if ip.octets()[0] != 127 {
            bail!("{n} hosts from {first} do not fit in 127.0.0.0/8");
        }
        let last = ip.octets()[3];
        if last != 0 && last != 255 {
            out.push(ip);
        }
        a = a.checked_add(1).context("address overflow")?;
    }
    Ok(out)
}

/// Names, addresses and modes of the fleet (modes drawn from the seed).
pub fn plan(o: &Options) -> anyhow::Result<Vec<HostEntry>> {
    for (what, share) in [
        ("down", o.down),
        ("hung", o.hung),
        ("reset", o.reset),
        ("flap-share", o.flap_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            bail!("--{what} is a share between 0 and 1, not {share}");
        }
    }
    let n = o.hosts;
    let count = |share: f64| (share * n as f64).round() as usize;
    let (down, hung, reset) = (count(o.down), count(o.hung), count(o.reset));
    if down + hung + reset > n {
        bail!("--down, --hung and --reset add up to more than every host");
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(o.seed));
    let mut modes = vec![HostMode::Up; n];
    for (k, &i) in order.iter().enumerate() {
        modes[i] = if k < down {
            HostMode::Down
        } else if k < down + hung {
            HostMode::Hung
        } else if k < down + hung + reset {
            HostMode::Reset
        } else {
            HostMode::Up
        };
    }
    let width = n.to_string().len().max(4);
    Ok(addresses(o.first, n)?
        .into_iter()
        .zip(modes)
        .enumerate()
        .map(|(i, (addr, mode))| HostEntry {
            name: if o.by_address {
                addr.to_string()
            } else {
                format!("fleet-{:0width$}", i + 1)
            },
            addr,
            mode,
        })
        .collect())
}

/// Creates an ed25519 key pair with `ssh-keygen` unless `path` exists.
fn keygen(path: &Path, comment: &str) -> anyhow::Result<()> {
    if path.exists() && path.with_extension("pub").exists() {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .context("cannot run ssh-keygen (install openssh-client)")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Where the written files are.
#[derive(Debug, Clone)]
pub struct Files {
    pub config: PathBuf,
    pub ssh_config: PathBuf,
    pub known_hosts: PathBuf,
    pub client_key: PathBuf,
    pub host_key: PathBuf,
    pub manifest: PathBuf,
}

impl Files {
    pub fn in_dir(dir: &Path) -> Files {
        Files {
            config: dir.join("fleet.toml"),
            ssh_config: dir.join("ssh_config"),
            known_hosts: dir.join("known_hosts"),
            client_key: dir.join("client_ed25519"),
            host_key: dir.join("host_ed25519"),
            manifest: dir.join("hosts.tsv"),
        }
    }
}

fn quoted(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// Writes the lookout config, ssh config, known_hosts and manifest for hosts on `port`.
pub fn write_files(o: &Options, files: &Files, hosts: &[HostEntry], port: u16) -> anyhow::Result<()> {
    let host_pub = std::fs::read_to_string(files.host_key.with_extension("pub")).context("host key")?;
    let mut parts = host_pub.split_ascii_whitespace();
    let (alg, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));

    let mut known = String::new();
    let mut ssh = format!(
        "# written by lookout-fleet: {n} simulated hosts\nHost {pattern}\n  User lookout\n  Port {port}\n  \
         IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n  \
         BatchMode yes\n\n",
        n = hosts.len(),
        pattern = if o.by_address { "127.*" } else { "fleet-*" },
        key = files.client_key.display(),
        kh = files.known_hosts.display(),
    );
    for h in hosts {
        let _ = writeln!(known, "[{}]:{port} {alg} {b64}", h.addr);
        if !o.by_address {
            let _ = writeln!(ssh, "Host {}\n  HostName {}\n", h.name, h.addr);
        }
    }
    let names: Vec<String> = hosts
        .iter()
        .map(|h| toml::Value::String(h.name.clone()).to_string())
        .collect();
    let mut config = format!(
        "# written by lookout-fleet: {n} simulated hosts on port {port} ({up} up)\n\
         [general]\ninterval = \"{interval}\"\n\n\
         [ssh]\nconfig_file = {cf}\nknown_hosts = {kh}\nhost_key_policy = \"strict\"\n\
         identity_files = [{id}]\nconnect_timeout = \"{ct}\"\n\n\
         [[hosts]]\ngroup = \"fleet\"\nnames = [\n",
        n = hosts.len(),
        up = hosts.iter().filter(|h| h.mode == HostMode::Up).count(),
        interval = humantime::format_duration(o.interval),
        cf = quoted(&files.ssh_config),
        kh = quoted(&files.known_hosts),
        id = quoted(&files.client_key),
        ct = humantime::format_duration(o.connect_timeout),
    );
    for chunk in names.chunks(8) {
        let _ = writeln!(config, "  {},", chunk.join(", "));
    }
    config.push_str("]\n");
    if !o.watch.is_empty() {
        let watch: Vec<String> = o
            .watch
            .iter()
            .map(|w| toml::Value::String(w.clone()).to_string())
            .collect();
        let _ = write!(
            config,
            "\n[[watch.processes]]\nhosts = [\"@fleet\"]\nnames = [{}]\n",
            watch.join(", ")
        );
    }
    // Checks the simulated hosts answer (`--checks N`), for the benchmark.
    for i in 0..o.checks {
        let _ = write!(
            config,
            "\n[[check]]\nname = \"sim_{i}\"\nhosts = [\"@fleet\"]\ncommand = \"sim-check {i}\"\n\
             format = \"nagios\"\ninterval = \"{}\"\n",
            humantime::format_duration(o.check_interval)
        );
    }
    std::fs::write(&files.known_hosts, known).context("known_hosts")?;
    std::fs::write(&files.ssh_config, ssh).context("ssh_config")?;
    write_manifest(&files.manifest, hosts.iter().map(|h| (h, h.mode)))?;
    std::fs::write(&files.config, config).context("fleet.toml")?;
    Ok(())
}

/// Writes `hosts.tsv` (name, address, mode now) whole, by renaming a new file over it, so a
/// reader never sees half of it.
pub fn write_manifest<'a>(
    path: &Path,
    hosts: impl Iterator<Item = (&'a HostEntry, HostMode)>,
) -> anyhow::Result<()> {
    let mut manifest = String::from("name\taddress\tmode\n");
    for (h, mode) in hosts {
        let _ = writeln!(manifest, "{}\t{}\t{}", h.name, h.addr, mode.as_str());
    }
    let new = path.with_extension("tsv.new");
    std::fs::write(&new, manifest).with_context(|| format!("cannot write {}", new.display()))?;
    std::fs::rename(&new, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A fleet whose listeners are bound and whose files are written; [`Fleet::run`] serves it.
pub struct Fleet {
    pub port: u16,
    pub hosts: Vec<HostEntry>,
    pub files: Files,
    shared: Arc<server::Shared>,
    /// Every host, with its listener unless it starts down.
    listeners: Vec<(Arc<server::Host>, Option<TcpListener>)>,
    flap: Option<flap::Flapper>,
}

impl Fleet {
    /// Creates keys (kept across runs in `dir`), binds every listening host and writes the
    /// files. Must run inside a tokio runtime.
    pub async fn bind(o: &Options) -> anyhow::Result<Fleet> {
        std::fs::create_dir_all(&o.dir).with_context(|| format!("cannot create {}", o.dir.display()))?;
        let dir = o.dir.canonicalize().context("fleet dir")?;
        let files = Files::in_dir(&dir);
        keygen(&files.host_key, "lookout-fleet host")?;
        keygen(&files.client_key, "lookout-fleet client")?;
        let host_key = russh::keys::load_secret_key(&files.host_key, None).context("host key")?;
        let client_pub =
            std::fs::read_to_string(files.client_key.with_extension("pub")).context("client key")?;
        let client_key = russh::keys::PublicKey::from_openssh(client_pub.trim()).context("client key")?;
        let hosts = plan(o)?;
        let (command_procs, command_plain) = server::commands();
        let config = russh::server::Config {
            keys: vec![host_key],
            nodelay: true,
            inactivity_timeout: None,
            auth_rejection_time: Duration::from_millis(100),
            auth_rejection_time_initial: Some(Duration::ZERO),
            ..Default::default()
        };
        let shared = Arc::new(server::Shared {
            config: Arc::new(config),
            client_key,
            knobs: o.knobs.clone(),
            command_procs,
            command_plain,
        });
        let mut port = o.port;
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for h in &hosts {
            bound.push(if h.mode == HostMode::Down {
                None
            } else {
                let listener = TcpListener::bind((h.addr, port))
                    .await
                    .with_context(|| format!("cannot listen on {}:{port}", h.addr))?;
                if port == 0 {
                    port = listener.local_addr()?.port();
                }
                Some(listener)
            });
        }
        if port == 0 {
            // every host is down: any free port will do
            port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        }
        for (i, (h, listener)) in hosts.iter().zip(bound).enumerate() {
            let host = Arc::new(server::Host {
                sim: std::sync::Mutex::new(HostSim::new(
                    o.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                    &o.profile,
                )),
                mode: tokio::sync::watch::Sender::new(h.mode),
                addr: (h.addr, port).into(),
                sessions: std::sync::atomic::AtomicU32::new(0),
            });
            listeners.push((host, listener));
        }
        write_files(o, &files, &hosts, port)?;
        let flap = o.flap.map(|every| flap::Flapper {
            every,
            share: o.flap_share,
            stop_after: o.flap_for,
            seed: o.seed,
            hosts: hosts
                .iter()
                .cloned()
                .zip(listeners.iter().map(|(h, _)| h.clone()))
                .collect(),
            manifest: files.manifest.clone(),
        });
        Ok(Fleet {
            port,
            hosts,
            files,
            shared,
            listeners,
            flap,
        })
    }

    /// Serves every host until the process ends.
    pub async fn run(self) {
        let mut tasks = tokio::task::JoinSet::new();
        for (host, listener) in self.listeners {
            tasks.spawn(server::serve(self.shared.clone(), host, listener));
        }
        if let Some(flapper) = self.flap {
            tasks.spawn(flapper.run());
        }
        while tasks.join_next().await.is_some() {}
    }

    pub fn count(&self, mode: HostMode) -> usize {
        self.hosts.iter().filter(|h| h.mode == mode).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_zero_and_broadcast() {
        let a = addresses(Ipv4Addr::new(127, 42, 0, 253), 4).expect("fits");
        assert_eq!(
            a,
            [
                Ipv4Addr::new(127, 42, 0, 253),
                Ipv4Addr::new(127, 42, 0, 254),
                Ipv4Addr::new(127, 42, 1, 1),
                Ipv4Addr::new(127, 42, 1, 2)
            ]
        );
        assert!(addresses(Ipv4Addr::new(127, 255, 255, 250), 10).is_err());
    }

    #[test]
    fn plan_draws_modes_by_share() {
        let o = Options {
            hosts: 100,
            down: 0.05,
            hung: 0.02,
            reset: 0.01,
            ..Options::default()
        };
        let p = plan(&o).expect("plan");
        let n = |m| p.iter().filter(|h| h.mode == m).count();
        assert_eq!(
            (
                n(HostMode::Up),
                n(HostMode::Down),
                n(HostMode::Hung),
                n(HostMode::Reset)
            ),
            (92, 5, 2, 1)
        );
        assert_eq!(p[0].name, "fleet-0001");
        assert_eq!(p[99].name, "fleet-0100");
        // the same seed, the same fleet
        let again = plan(&o).expect("plan");
        assert!(p.iter().zip(&again).all(|(a, b)| a.mode == b.mode));
        assert!(
            plan(&Options {
                down: 0.7,
                hung: 0.5,
                ..o
            })
            .is_err()
        );
    }
}
