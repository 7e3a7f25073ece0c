//! Hosts that flap (`lookout-fleet serve --flap 30s`): every period each `up` host fails
//! with probability `--flap-share` (it goes down, hangs or resets its connections) and each
//! failed host comes back up with probability 1/2 (so a failure lasts two periods on
//! average, and about share/(share+1/2) of the fleet is failed at any time), so a long run
//! (scripts/soak.sh) sees hosts leave and return as on a real cluster. Each round rewrites `hosts.tsv` with the modes now and prints one line
//! (`flap t=SECONDS changed=N up=N down=N hung=N reset=N`); after `--flap-for` the modes
//! stay as they are (`flap stopped t=SECONDS`), so a run can end on a settled fleet.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{HostEntry, HostMode, server};

/// What flaps, how often and for how long.
pub struct Flapper {
    pub every: Duration,
    pub share: f64,
    pub stop_after: Option<Duration>,
    pub seed: u64,
    pub hosts: Vec<(HostEntry, Arc<server::Host>)>,
    pub manifest: PathBuf,
}

/// The chance that a failed host comes back at a round.
pub const RECOVER: f64 = 0.5;

/// One round: each `up` host fails with probability `share`, each failed one comes back
/// with probability [`RECOVER`]. Returns how many changed.
pub fn step(rng: &mut impl Rng, modes: &mut [HostMode], share: f64) -> usize {
    let mut changed = 0;
    for mode in modes.iter_mut() {
        let p = if *mode == HostMode::Up { share } else { RECOVER };
        if !rng.random_bool(p) {
            continue;
        }
        *mode = match *mode {
            HostMode::Up => [HostMode::Down, HostMode::Hung, HostMode::Reset][rng.random_range(0..3)],
            _ => HostMode::Up,
        };
        changed += 1;
    }
    changed
}

impl Flapper {
    pub async fn run(self) {
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x666c_6170);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + self.every, self.every);
        loop {
            ticks.tick().await;
            let t = started.elapsed().as_secs();
            if self.stop_after.is_some_and(|d| started.elapsed() >= d) {
                say(format_args!("flap stopped t={t}"));
                return;
            }
            let mut modes: Vec<HostMode> = self.hosts.iter().map(|(_, h)| h.mode()).collect();
            let changed = step(&mut rng, &mut modes, self.share);
            for ((_, host), mode) in self.hosts.iter().zip(&modes) {
                host.mode
                    .send_if_modified(|m| std::mem::replace(m, *mode) != *mode);
            }
            if let Err(e) = super::write_manifest(
                &self.manifest,
                self.hosts.iter().map(|(e, _)| e).zip(modes.iter().copied()),
            ) {
                eprintln!("lookout-fleet: {e:#}");
            }
            let n = |m: HostMode| modes.iter().filter(|x| **x == m).count();
            say(format_args!(
                "flap t={t} changed={changed} up={} down={} hung={} reset={}",
                n(HostMode::Up),
                n(HostMode::Down),
                n(HostMode::Hung),
                n(HostMode::Reset)
            ));
        }
    }
}

/// One line on stdout, flushed; a reader that went away (a closed pipe) is no error.
fn say(line: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_fails_some_hosts_and_brings_failed_ones_back() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut modes = vec![HostMode::Up; 1000];
        let changed = step(&mut rng, &mut modes, 0.1);
        assert!((60..140).contains(&changed), "{changed}");
        let failed = modes.iter().filter(|m| **m != HostMode::Up).count();
        assert_eq!(failed, changed);
        for m in [HostMode::Down, HostMode::Hung, HostMode::Reset] {
            assert!(modes.contains(&m), "{m:?} is drawn");
        }
        // with share 1 every up host fails; about half the failed ones come back
        let before = modes.clone();
        let changed = step(&mut rng, &mut modes, 1.0);
        let back = before
            .iter()
            .zip(&modes)
            .filter(|(b, a)| **b != HostMode::Up && **a == HostMode::Up)
            .count();
        assert!(
            modes
                .iter()
                .zip(&before)
                .all(|(a, b)| *b != HostMode::Up || *a != HostMode::Up)
        );
        assert!(back > failed / 4 && back < failed * 3 / 4, "{back} of {failed}");
        assert_eq!(changed, 1000 - failed + back);
        // with share 0 only failed hosts change, and only back to up
        let before = modes.clone();
        step(&mut rng, &mut modes, 0.0);
        assert!(
            before
                .iter()
                .zip(&modes)
                .all(|(b, a)| b == a || *a == HostMode::Up)
        );
    }
}
