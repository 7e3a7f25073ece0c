//! The script-facing front ends of a recording: `lookout snapshot --at TIME` and
//! `lookout events --since TIME [--until TIME]`.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use super::{Recording, timespec};

fn report_problems(rec: &Recording) {
    for p in rec.take_problems() {
        eprintln!("lookout: recording: {p}");
    }
}

/// `lookout snapshot --at TIME`: the recorded snapshot as of TIME, in the JSON of
/// `lookout snapshot --json` (or its table).
pub fn snapshot_at(dir: &Path, at: &str, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let rec = Recording::open(dir)?;
    report_problems(&rec);
    let at = timespec::parse(at, SystemTime::now()).map_err(anyhow::Error::msg)?;
    let snap = rec.snapshot_at(at, None);
    report_problems(&rec);
    let snap = snap?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &snap)?;
        writeln!(out)?;
    } else {
        writeln!(out, "as recorded at {}", timespec::full(at))?;
        crate::commands::print_table(&snap, out)?;
    }
    Ok(())
}

/// `lookout events --since T [--until T]`: the recorded events of the range, oldest first.
pub fn events(
    dir: &Path,
    since: &str,
    until: Option<&str>,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let rec = Recording::open(dir)?;
    report_problems(&rec);
    let now = SystemTime::now();
    let since_t = timespec::parse(since, now).map_err(anyhow::Error::msg)?;
    let until_t = match until {
        Some(u) => timespec::parse(u, now).map_err(anyhow::Error::msg)?,
        None => now,
    };
    if until_t < since_t {
        anyhow::bail!(
            "--until ({}) is before --since ({})",
            timespec::full(until_t),
            timespec::full(since_t)
        );
    }
    let (a, b) = rec.span();
    if since_t > b || until_t < a {
        anyhow::bail!(
            "{} .. {} is outside the recorded span: {}",
            timespec::full(since_t),
            timespec::full(until_t),
            timespec::span_text(a, b)
        );
    }
    let events = rec.events(since_t, until_t);
    report_problems(&rec);
    for (t, line) in events {
        if json {
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}  {}", timespec::full(t), describe(&line))?;
        }
    }
    Ok(())
}

/// One readable line for a recorded event's JSON.
pub fn describe(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_string();
    };
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let num = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .map(|x| format!(" {x}"))
            .unwrap_or_default()
    };
    match s("event").as_str() {
        "trigger" => format!(
            "trigger {:?} {} {}: {} -> {}{}",
            s("trigger"),
            s("host"),
            s("instance"),
            s("previous"),
            s("state"),
            num("value")
        ),
        "action" => format!(
            "action {:?} {} {} ({}): {}",
            s("trigger"),
            s("host"),
            s("instance"),
            s("state"),
            s("result")
        ),
        "host_status" => format!("host {} {} {}", s("host"), s("status"), s("error")),
        other => format!("{other} {line}"),
    }
}
