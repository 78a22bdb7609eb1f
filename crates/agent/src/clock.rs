//! The one clock the lease uses: CLOCK_BOOTTIME, which (unlike Rust's
//! `Instant`, CLOCK_MONOTONIC) keeps counting while a machine is suspended,
//! and which wall-clock jumps never move.
//!
//! This is also the agent's seam for time and randomness: a process that
//! runs agents under a simulator (`haraft-sim`) redirects all three reads
//! here once, before any agent starts, to its virtual clock and its seeded
//! generator. The daemon never redirects them.

use haraft_core::BootTime;
use std::sync::OnceLock;

/// Where the agent's time and randomness come from when not from the
/// operating system.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub boottime: fn() -> BootTime,
    pub unix_ms: fn() -> u64,
    pub random_u64: fn() -> u64,
}

static SOURCE: OnceLock<Source> = OnceLock::new();

/// Redirects this process's clock and randomness, once; `false` when they
/// were already redirected (the first redirection stays).
pub fn redirect(source: Source) -> bool {
    SOURCE.set(source).is_ok()
}

pub fn boottime() -> BootTime {
    if let Some(s) = SOURCE.get() {
        return (s.boottime)();
    }
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_BOOTTIME exists on every Linux since 2.6.39");
    BootTime(ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000)
}

/// Wall-clock time for records an operator reads (history, identity);
/// never used for the lease.
pub fn now_unix_ms() -> u64 {
    if let Some(s) = SOURCE.get() {
        return (s.unix_ms)();
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A random number for jitter (std's per-process random hash keys mixed
/// with the time); never for anything secret.
pub fn random_u64() -> u64 {
    if let Some(s) = SOURCE.get() {
        return (s.random_u64)();
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}
