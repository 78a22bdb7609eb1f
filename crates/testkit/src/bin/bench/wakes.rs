//! Thread wake-ups: what one costs on this machine, and how many an agent
//! makes. On a virtual machine a wake-up (a thread leaving a wait: a
//! timer, a condition variable, a socket becoming readable) costs far
//! more CPU than the work it wakes for, so an idle agent's CPU is about
//! its wake-ups times this cost.
//!
//! `haraft-bench wake-floor [--seconds N (30)]`: two threads hand a token
//! back and forth through a condition variable 125 times a second, the
//! first sleeping 8 ms between hand-offs: three wake-ups a tick, no other
//! work. Prints the CPU per wake-up and how many wake-ups a second fit in
//! the idle goal (0.3 % of one core).

use crate::Args;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Ticks a second of the floor measurement.
const RATE: u64 = 125;
/// Wake-ups a tick: the sleeper's timer, the peer, the sleeper again.
const WAKES_PER_TICK: u64 = 3;
/// The idle goal, in microseconds of CPU a second.
const GOAL_US_PER_SECOND: f64 = 3000.0;

/// This process's user + system CPU, in microseconds.
fn own_cpu_us() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

pub fn floor(args: &Args) -> Result<(), String> {
    // The token: true while the peer holds it; `None` tells the peer to end.
    let token = Arc::new((Mutex::new(Some(false)), Condvar::new()));
    let peer = {
        let token = Arc::clone(&token);
        std::thread::spawn(move || {
            let (m, cv) = &*token;
            let mut held = m.lock().expect("never poisoned");
            while let Some(mine) = *held {
                if mine {
                    *held = Some(false);
                    cv.notify_one();
                }
                held = cv.wait(held).expect("never poisoned");
            }
        })
    };
    let seconds = args.seconds.max(1);
    let ticks = seconds * RATE;
    let before = own_cpu_us();
    let (m, cv) = &*token;
    for _ in 0..ticks {
        std::thread::sleep(Duration::from_micros(1_000_000 / RATE));
        let mut held = m.lock().expect("never poisoned");
        *held = Some(true);
        cv.notify_one();
        while *held == Some(true) {
            held = cv.wait(held).expect("never poisoned");
        }
    }
    let used = own_cpu_us() - before;
    *m.lock().expect("never poisoned") = None;
    cv.notify_one();
    peer.join().map_err(|_| "the peer thread panicked")?;
    let per_wake = used / (ticks * WAKES_PER_TICK) as f64;
    let budget = GOAL_US_PER_SECOND / per_wake;
    let percent = used / (seconds as f64 * 1e6) * 100.0;
    let json = serde_json::json!({
        "bench": "wake-floor",
        "seconds": seconds,
        "wakes_per_second": RATE * WAKES_PER_TICK,
        "cpu_percent_of_one_core": (percent * 1000.0).round() / 1000.0,
        "cpu_us_per_wake": (per_wake * 10.0).round() / 10.0,
        "wakes_per_second_within_0_3_percent": budget.round(),
    });
    println!("{json}");
    println!(
        "wake-floor {}s: {} wake-ups a second cost {percent:.2} % of one core, {per_wake:.1} µs each: \
         0.3 % of a core allows about {budget:.0} wake-ups a second",
        seconds,
        RATE * WAKES_PER_TICK
    );
    Ok(())
}

/// Context switches (voluntary and not) of every thread of `pid`, summed
/// by thread name without its trailing number ("sled-io-3" → "sled-io").
pub fn switches(pid: i32) -> Result<BTreeMap<String, u64>, String> {
    let tasks = format!("/proc/{pid}/task");
    let mut by_name = BTreeMap::new();
    for task in std::fs::read_dir(&tasks).map_err(|e| format!("{tasks}: {e}"))?.flatten() {
        let path = task.path();
        // A thread that ended between the listing and the read counts 0.
        let (Ok(comm), Ok(status)) =
            (std::fs::read_to_string(path.join("comm")), std::fs::read_to_string(path.join("status")))
        else {
            continue;
        };
        let count: u64 = status
            .lines()
            .filter_map(|l| {
                l.strip_prefix("voluntary_ctxt_switches:").or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum();
        let name = comm.trim().trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('-');
        *by_name.entry(name.to_string()).or_default() += count;
    }
    Ok(by_name)
}

/// Wake-ups a second by thread name between two `switches` readings.
pub fn rates(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, seconds: f64) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, n)| {
            let rate = n.saturating_sub(before.get(name).copied().unwrap_or(0)) as f64 / seconds;
            (name.clone(), (rate * 10.0).round() / 10.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_by_name_and_new_threads_count_from_zero() {
        let before = BTreeMap::from([("sled-io".to_string(), 100), ("tokio-rt-worker".to_string(), 50)]);
        let after = BTreeMap::from([
            ("sled-io".to_string(), 300),
            ("tokio-rt-worker".to_string(), 40),
            ("fence-guard".to_string(), 20),
        ]);
        let r = rates(&before, &after, 10.0);
        assert_eq!(r["sled-io"], 20.0);
        assert_eq!(r["tokio-rt-worker"], 0.0, "a thread that ended and another that began: never negative");
        assert_eq!(r["fence-guard"], 2.0);
    }

    #[test]
    fn switches_group_this_process_threads_by_name() {
        let worker = std::thread::Builder::new().name("bench-probe-7".into()).spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
        });
        let worker = worker.expect("a thread");
        std::thread::sleep(Duration::from_millis(100));
        let by_name = switches(std::process::id() as i32).expect("own /proc");
        worker.join().expect("the probe ends");
        assert!(by_name.contains_key("bench-probe"), "{by_name:?}");
        assert!(!by_name.keys().any(|k| k.ends_with(|c: char| c.is_ascii_digit())), "{by_name:?}");
    }
}
