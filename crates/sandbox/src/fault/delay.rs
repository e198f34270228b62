//! Added latency without `sch_netem`: packets a node sends are queued to user
//! space (an nftables `queue` verdict) and released by this delayer once their
//! time has come. It runs as a process of its own inside the node's network
//! namespace, in the cluster's cgroup, so destroying the cluster ends it.
//!
//! The rule uses `bypass`, so were the delayer to die the packets would pass
//! undelayed rather than be lost.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::time::{Duration, Instant};

use rand::Rng;

/// Most packets held at once; beyond that the kernel lets packets through
/// (`fail-open`), so an overloaded delayer never turns into packet loss.
const MAX_HELD: u32 = 4096;

struct Held {
    due: Instant,
    seq: u64,
    msg: nfq::Message,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Binds queue `queue` in the current network namespace, prints `ready` on
/// stdout once bound, then delays every queued packet by `delay` ± `jitter`
/// until killed. Returns only on error.
pub fn run_delayer(queue: u16, delay: Duration, jitter: Duration) -> std::io::Result<()> {
    let mut q = nfq::Queue::open()?;
    q.bind(queue)?;
    q.set_copy_range(queue, 0)?;
    q.set_fail_open(queue, true)?;
    q.set_queue_max_len(queue, MAX_HELD)?;
    q.set_nonblocking(true);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
    }
    let mut rng = rand::thread_rng();
    let mut held: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        loop {
            match q.recv() {
                Ok(mut msg) => {
                    let spread = if jitter.is_zero() {
                        0i64
                    } else {
                        let j = jitter.as_micros() as i64;
                        rng.gen_range(-j..=j)
                    };
                    let us = (delay.as_micros() as i64 + spread).max(0) as u64;
                    msg.set_verdict(nfq::Verdict::Accept);
                    seq += 1;
                    held.push(Reverse(Held {
                        due: Instant::now() + Duration::from_micros(us),
                        seq,
                        msg,
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        while held.peek().is_some_and(|h| h.0.due <= now) {
            let Reverse(h) = held.pop().expect("peeked");
            q.verdict(h.msg)?;
        }
        // Sleep until the next packet is due or new packets may have arrived.
        let wait = held
            .peek()
            .map(|h| h.0.due.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(5))
            .min(Duration::from_micros(500));
        std::thread::sleep(wait);
    }
}
