//! A packet holder for NFQUEUE: every packet the queue receives is accepted `delay` after it
//! arrived. With an iptables `-j NFQUEUE` rule inside a network namespace this adds a fixed
//! delay to chosen packets (`tc netem` is missing on the test machines' kernel).
//!
//! Shared by the ping tests and `examples/nfq_delay.rs`.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

/// Binds queue `queue_num` in the current network namespace, calls `ready` once bound, then
/// holds packets until `stop` returns true (checked about every millisecond).
pub fn run(queue_num: u16, delay: Duration, ready: impl FnOnce(), stop: impl Fn() -> bool) -> io::Result<()> {
    let mut queue = nfq::Queue::open()?;
    queue.bind(queue_num)?;
    queue.set_nonblocking(true);
    ready();
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    while !stop() {
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    msg.set_verdict(nfq::Verdict::Accept);
                    held.push_back((Instant::now() + delay, msg));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, msg)) = held.pop_front() {
                queue.verdict(msg)?;
            }
        }
        let wait = held
            .front()
            .map_or(Duration::from_millis(1), |(due, _)| {
                due.saturating_duration_since(now)
            })
            .min(Duration::from_millis(1));
        std::thread::sleep(wait);
    }
    Ok(())
}
