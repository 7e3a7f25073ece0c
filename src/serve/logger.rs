//! The log of `lookout serve` (and of the socket commands): one line per record on stderr,
//! with the time, so that the server's log says who attached, who acknowledged what and
//! what the engine reported.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        let ours = m.target().starts_with("lookout");
        m.level() <= if ours { Level::Info } else { Level::Warn }
    }
    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            let level = r.level().as_str().to_lowercase();
            eprintln!("{at} {level}: {}", r.args());
        }
    }
    fn flush(&self) {}
}

/// Installs the stderr logger (once; later calls do nothing).
pub fn init() {
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}
