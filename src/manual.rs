//! The terminal user's references, generated from the clap definitions so they cannot drift
//! from the command line: the man page (`lookout manpage`, clap_mangen) and shell completion
//! scripts (`lookout completions SHELL`, clap_complete). scripts/package.sh writes both into
//! the Debian package.

use clap::CommandFactory;

use crate::cli::Cli;

/// The man page of `lookout` and its subcommands, in roff.
pub fn manpage(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    // One section per subcommand, with its own options, instead of separate pages.
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        writeln!(out, ".TP")?;
        writeln!(out, "\\fBlookout {}\\fR", sub.get_name())?;
        if let Some(about) = sub.get_about() {
            writeln!(out, "{}", roff_escape(&about.to_string()))?;
        }
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_global_set() && !a.is_hide_set())
        {
            let name = match (arg.get_long(), arg.get_value_names()) {
                (Some(l), _) => format!("--{l}"),
                (None, Some(v)) => v.first().map_or_else(String::new, |v| v.to_string()),
                (None, None) => arg.get_id().to_string(),
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            writeln!(
                out,
                ".RS\n.TP\n\\fB{}\\fR\n{}\n.RE",
                roff_escape(&name),
                roff_escape(&help)
            )?;
        }
    }
    writeln!(out, ".SH FILES")?;
    writeln!(
        out,
        ".TP\n\\fI$XDG_CONFIG_HOME/lookout/config.toml\\fR\nThe configuration (\\fBlookout init\\fR writes a starter one).\n.TP\n\\fI~/.ssh/config\\fR\nHosts, users, ports, keys, ProxyJump and ProxyCommand, read as OpenSSH reads them.\n.TP\n\\fI/usr/share/doc/lookout/sample.toml\\fR\nEvery configuration key, commented."
    )?;
    man.render_version_section(out)?;
    Ok(())
}

/// Backslashes and a leading dot or quote would be read as roff requests.
fn roff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\\\").replace('-', "\\-");
    s.lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "lookout", out);
}
