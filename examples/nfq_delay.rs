//! Test support: delays the packets of an NFQUEUE queue by a fixed time.
//!
//! ```sh
//! ip netns exec NS iptables -A INPUT -p icmp --icmp-type echo-request \
//!     -j NFQUEUE --queue-num 0 --queue-bypass
//! ip netns exec NS target/debug/examples/nfq_delay --queue 0 --delay-ms 50
//! ```
//! Prints `ready` once the queue is bound; runs until killed.

#[path = "../tests/support/nfq_holder.rs"]
mod nfq_holder;

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let mut queue: u16 = 0;
    let mut delay_ms: u64 = 50;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match (arg.as_str(), value.as_deref()) {
            ("--queue", Some(v)) => v.parse().map(|v| queue = v).is_ok(),
            ("--delay-ms", Some(v)) => v.parse().map(|v| delay_ms = v).is_ok(),
            _ => false,
        };
        if !parsed {
            eprintln!("usage: nfq_delay [--queue N] [--delay-ms MS]");
            return ExitCode::from(2);
        }
    }
    let result = nfq_holder::run(
        queue,
        Duration::from_millis(delay_ms),
        || println!("ready"),
        || false,
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nfq_delay: {e}");
            ExitCode::FAILURE
        }
    }
}
