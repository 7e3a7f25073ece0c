//! `lookout-fleet`: a fleet of simulated SSH hosts for lookout's tests and benchmarks
//! (docs/fleet.md), and a probe that measures lookout's collection against it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lookout::fleet::{self, HostMode, Knobs, Options, sim::Profile};

#[derive(Debug, Parser)]
#[command(
    name = "lookout-fleet",
    version,
    about = "Simulated SSH hosts on loopback for lookout's tests and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve N simulated hosts; writes DIR/fleet.toml, ssh_config, known_hosts, client key.
    Serve(Serve),
    /// Run lookout's collectors and engine against a config; print up/fresh counts.
    Probe {
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// How long to run.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// How often to print a line.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        every: Duration,
        /// Print `all_up` when this many hosts are up (default: every host in the config).
        #[arg(long)]
        expect_up: Option<usize>,
    },
}

#[derive(Debug, clap::Args)]
struct Serve {
    /// Number of hosts.
    #[arg(long, short = 'n', default_value_t = 10)]
    hosts: usize,
    /// Where keys and the generated files go (keys are reused across runs).
    #[arg(long, default_value = "fleet")]
    dir: PathBuf,
    /// TCP port of every host (0: pick a free one).
    #[arg(long, default_value_t = 2222)]
    port: u16,
    /// Address of the first host; the others follow it in 127.0.0.0/8.
    #[arg(long, default_value = "127.42.0.1")]
    first: Ipv4Addr,
    /// Share of hosts that are down (nothing listens: connection refused).
    #[arg(long, default_value_t = 0.0)]
    down: f64,
    /// Share of hosts that accept connections and never answer.
    #[arg(long, default_value_t = 0.0)]
    hung: f64,
    /// Share of hosts that reset every connection.
    #[arg(long, default_value_t = 0.0)]
    reset: f64,
    /// Delay before every answer.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Random extra delay of up to this much.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    jitter: Duration,
    /// Processes per simulated host.
    #[arg(long, default_value_t = 40)]
    procs: usize,
    /// Fastest disk fill rate, in KiB/s.
    #[arg(long, default_value_t = 256)]
    fill_kib: u64,
    /// Seed of sizes, habits and which hosts are down/hung/reset.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Interval written into fleet.toml.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// connect_timeout written into fleet.toml.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Process names fleet.toml watches (comma-separated; empty: no process listing).
    #[arg(long, default_value = "nginx,python3")]
    watch: String,
    /// Name hosts by address in fleet.toml instead of by fleet-NNNN ssh aliases.
    #[arg(long)]
    by_address: bool,
    /// `[[check]]`s fleet.toml runs on every host (answered by the simulator).
    #[arg(long, default_value_t = 0)]
    checks: usize,
    /// Interval of those checks.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    check_interval: Duration,
    /// Hosts change modes this often (up hosts go down, hang or reset; others come back).
    #[arg(long, value_parser = humantime::parse_duration)]
    flap: Option<Duration>,
    /// Share of hosts that change at each flap.
    #[arg(long, default_value_t = 0.05)]
    flap_share: f64,
    /// Stop flapping after this long (the modes then stay as they are).
    #[arg(long, value_parser = humantime::parse_duration)]
    flap_for: Option<Duration>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // lookout's own runtime: the probe measures lookout's collection as it runs.
    let runtime = match lookout::runtime::tokio_runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lookout-fleet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Cmd::Serve(s) => serve(s).await,
            Cmd::Probe {
                config,
                duration,
                every,
                expect_up,
            } => {
                let config = lookout::config::load(Some(&config)).map_err(|e| anyhow::anyhow!("{e}"))?;
                let expect = expect_up.unwrap_or(config.hosts.len());
                fleet::probe::run(Arc::new(config), duration, every, expect, std::io::stdout()).await?;
                Ok(())
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookout-fleet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(s: Serve) -> anyhow::Result<()> {
    let o = Options {
        hosts: s.hosts,
        dir: s.dir,
        port: s.port,
        first: s.first,
        down: s.down,
        hung: s.hung,
        reset: s.reset,
        knobs: Knobs {
            latency: s.latency,
            jitter: s.jitter,
        },
        profile: Profile {
            processes: s.procs,
            fill_bps: s.fill_kib * 1024,
        },
        seed: s.seed,
        interval: s.interval,
        connect_timeout: s.connect_timeout,
        watch: s
            .watch
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect(),
        by_address: s.by_address,
        checks: s.checks,
        check_interval: s.check_interval,
        flap: s.flap,
        flap_share: s.flap_share,
        flap_for: s.flap_for,
    };
    let fleet = fleet::Fleet::bind(&o).await?;
    let (first, last) = match (fleet.hosts.first(), fleet.hosts.last()) {
        (Some(a), Some(b)) => (a.addr, b.addr),
        _ => anyhow::bail!("no hosts to serve"),
    };
    // One line, flushed: scripts and tests wait for it.
    println!(
        "ready port={} hosts={} up={} down={} hung={} reset={} addresses={first}-{last} config={}",
        fleet.port,
        fleet.hosts.len(),
        fleet.count(HostMode::Up),
        fleet.count(HostMode::Down),
        fleet.count(HostMode::Hung),
        fleet.count(HostMode::Reset),
        fleet.files.config.display()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        () = fleet.run() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
