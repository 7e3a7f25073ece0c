//! The command line (DESIGN.md, "Command line").

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "lookout", version, about = "Watch a cluster of servers from one terminal: per-host tables, maximal-risk lines and triggers", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    /// Theme: a name from themes/ or a path to a theme file.
    #[arg(long, global = true)]
    pub theme: Option<String>,
    #[command(flatten)]
    pub targets: HostArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The hosts named on the command line, before or after the subcommand.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts = self.targets.hosts.clone();
        if let Some(
            Command::Check { targets, .. } | Command::Snapshot { targets, .. } | Command::Run { targets, .. },
        ) = &self.command
        {
            hosts.extend(targets.hosts.iter().cloned());
        }
        hosts
    }
}

/// SSH hosts named on the command line (see `crate::cli_hosts`).
#[derive(Debug, Args, Clone, Default)]
pub struct HostArgs {
    /// SSH hosts to watch: aliases of the ssh config (as `ssh HOST` takes them) or patterns
    /// such as 'db*' matching its Host names. Added to --config's hosts; without a config file
    /// they replace the local host.
    #[arg(value_name = "HOST")]
    pub hosts: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Configuration file (default: $XDG_CONFIG_HOME/lookout/config.toml, else watch the local host).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve the current values at http://HOST:PORT/metrics in the Prometheus text format.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Watch every concrete Host of the ssh config (blocks of wildcards only are skipped).
    #[arg(long, global = true)]
    pub all_ssh_hosts: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration: exit 0, or print every error and exit 2. Shows how each
    /// SSH host will be reached.
    Check {
        #[command(flatten)]
        targets: HostArgs,
        /// Print the result as JSON (hosts with their ssh resolution, checks, triggers, errors).
        #[arg(long)]
        json: bool,
    },
    /// Collect N rounds, print one snapshot and exit.
    Snapshot {
        /// Rounds to collect (rates and cpu % need at least 2).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        targets: HostArgs,
        /// Print the state of the `lookout serve` on this socket instead of collecting.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Run the engine and triggers without a screen; every event as one JSON line on stdout.
    Run {
        /// Required: there is no other mode of `run` yet.
        #[arg(long, required = true)]
        headless: bool,
        /// Stop after this long (e.g. "30s", "2h"); default: until SIGINT/SIGTERM.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        #[command(flatten)]
        targets: HostArgs,
        /// Print the events of the `lookout serve` on this socket instead of running an engine.
        #[arg(long, value_name = "PATH", conflicts_with = "duration")]
        socket: Option<PathBuf>,
    },
    /// Run the engine, collectors and triggers without a screen and serve them on a Unix
    /// socket to any number of `lookout attach` viewers.
    Serve {
        /// The socket (default: $XDG_RUNTIME_DIR/lookout/lookout.sock, else /tmp/lookout-$UID/lookout.sock).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Let members of this Unix group attach too (socket mode 0660).
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
    },
    /// The dashboard, fed by a `lookout serve` (on this machine, or on HOST over SSH).
    Attach {
        /// An ssh alias: run `lookout attach --stdio` there and view its server.
        host: Option<String>,
        /// The server's socket (on HOST when one is given); default as for `serve`.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Join stdin and stdout to the socket (what `attach HOST` runs on HOST).
        #[arg(long, conflicts_with = "host")]
        stdio: bool,
        /// The lookout program on HOST.
        #[arg(long, value_name = "PROGRAM", default_value = "lookout", requires = "host")]
        remote_lookout: String,
    },
    /// Ask the `lookout serve` on the socket to re-read its configuration.
    Reload {
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
}
