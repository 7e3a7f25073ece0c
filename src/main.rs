//! The `lookout` binary: parses the command line and hands over to the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use lookout::cli::{Cli, Command};
use lookout::serve::Target;
use lookout::{commands, config};

/// jemalloc rather than glibc's malloc: over a soak of hours glibc's arenas kept growing with
/// a flat live heap (fragmentation by the short-lived allocations of every sample), jemalloc's
/// did not (README, Soak).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn default_socket() -> std::path::PathBuf {
    lookout::serve::socket::default_path()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that need no configuration.
    match &cli.command {
        Some(Command::Completions { shell }) => {
            lookout::manual::completions(*shell, &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Some(Command::Manpage) => {
            return match lookout::manual::manpage(&mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lookout: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Init) => {
            let ssh_config = config::load(None).map(|c| c.ssh.config_file).unwrap_or_else(|_| {
                lookout::collectors::ssh::sshconfig::Local::current()
                    .home
                    .join(".ssh/config")
            });
            return match lookout::init::run(config::default_path(), &ssh_config) {
                Ok((path, n)) => {
                    println!(
                        "wrote {} ({n} hosts from {})",
                        path.display(),
                        ssh_config.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("lookout init: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        // Rule tests bring their own configs.
        Some(Command::Test { files }) => {
            return match lookout::ruletest::main(files, &mut std::io::stdout().lock()) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("lookout: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let check_json = matches!(cli.command, Some(Command::Check { json: true, .. }));
    let mut config = match config::load(cli.common.config.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            if check_json {
                let report = lookout::resolution::Report {
                    errors: errors.0.iter().map(ToString::to_string).collect(),
                    ..Default::default()
                };
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            }
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = lookout::cli_hosts::add(&mut config, &cli.hosts(), cli.common.all_ssh_hosts) {
        eprintln!("lookout: {e}");
        return ExitCode::from(2);
    }
    config.command_line_hosts = (cli.hosts(), cli.common.all_ssh_hosts);
    // Key bindings and the theme are the dashboard's to validate; `check` reports them too.
    if let Err(e) = lookout::ui::prepare(&config, cli.theme.as_deref()) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    if let Some(Command::Check { json, .. }) = cli.command {
        let report = lookout::resolution::report(&config);
        if json {
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
        } else {
            print!("{}", commands::check_report(&config));
            print!("{}", lookout::resolution::text(&report));
        }
        let failed = report.errors.iter().any(|e| !e.starts_with("warning: "));
        return if failed {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    if let Some(addr) = cli.common.metrics_addr {
        // Fail now, before a screen opens, if the address cannot be served.
        if let Err(e) = std::net::TcpListener::bind(addr) {
            eprintln!("lookout: cannot serve metrics on {addr}: {e}");
            return ExitCode::from(2);
        }
        config.metrics_addr = Some(addr);
    }
    if cli.common.no_record {
        config.record.enabled = false;
    }
    let runtime = match lookout::runtime::tokio_runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lookout: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = Arc::new(config);
    let result = runtime.block_on(async move {
        match cli.command {
            Some(Command::Snapshot {
                at: Some(at),
                record_dir,
                json,
                ..
            }) => {
                let dir = record_dir.unwrap_or_else(|| config.record.dir.clone());
                lookout::record::query::snapshot_at(&dir, &at, json, &mut std::io::stdout().lock())?;
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Events {
                since,
                until,
                json,
                record_dir,
            }) => {
                let dir = record_dir.unwrap_or_else(|| config.record.dir.clone());
                lookout::record::query::events(
                    &dir,
                    &since,
                    until.as_deref(),
                    json,
                    &mut std::io::stdout().lock(),
                )?;
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Replay { dir, at, speed }) => {
                let dir = dir.unwrap_or_else(|| config.record.dir.clone());
                lookout::ui::replay::run(config, cli.theme.as_deref(), &dir, at.as_deref(), speed).await?;
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Snapshot {
                rounds, json, socket, ..
            }) => {
                let snap = match socket {
                    Some(path) => lookout::serve::client::fetch_snapshot(&Target::Socket(path)).await?,
                    None => commands::collect_snapshot(config, rounds).await,
                };
                let mut out = std::io::stdout().lock();
                if json {
                    serde_json::to_writer_pretty(&mut out, &*snap)?;
                    use std::io::Write;
                    writeln!(out)?;
                } else {
                    commands::print_table(&snap, &mut out)?;
                }
                Ok::<ExitCode, anyhow::Error>(ExitCode::SUCCESS)
            }
            Some(Command::Run {
                socket: Some(path), ..
            }) => {
                lookout::serve::logger::init();
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                lookout::serve::client::stream_events(&Target::Socket(path), std::io::stdout(), stop).await?;
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Run { duration, .. }) => {
                lookout::headless::run(config, duration, std::io::stdout()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Serve { socket, group }) => {
                lookout::serve::logger::init();
                lookout::serve::serve(config, lookout::serve::ServeOptions { socket, group }).await?;
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Attach {
                stdio: true, socket, ..
            }) => {
                lookout::serve::remote::stdio_bridge(socket.unwrap_or_else(default_socket)).await?;
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Attach {
                host,
                socket,
                remote_lookout,
                ..
            }) => {
                let target = match host {
                    Some(host) => Target::Ssh(lookout::serve::remote::SshTarget {
                        host,
                        socket,
                        program: remote_lookout,
                        config: config.clone(),
                    }),
                    None => Target::Socket(socket.unwrap_or_else(default_socket)),
                };
                lookout::ui::attach(config, cli.theme.as_deref(), target).await?;
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Reload { socket }) => {
                let target = Target::Socket(socket.unwrap_or_else(default_socket));
                let (ok, text) = lookout::serve::client::reload(&target).await?;
                if ok {
                    println!("{text}");
                    Ok(ExitCode::SUCCESS)
                } else {
                    eprintln!("lookout: {text}");
                    Ok(ExitCode::FAILURE)
                }
            }
            None => {
                lookout::ui::run(config, cli.theme.as_deref()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Some(
                Command::Check { .. }
                | Command::Completions { .. }
                | Command::Manpage
                | Command::Init
                | Command::Test { .. },
            ) => Ok(ExitCode::SUCCESS),
        }
    });
    // Collector threads block in sysinfo; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => code,
        // `lookout snapshot --json | head` closing the pipe early is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookout: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}
