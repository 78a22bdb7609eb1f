//! The one clock the lease uses: CLOCK_BOOTTIME, which (unlike Rust's
//! `Instant`, CLOCK_MONOTONIC) keeps counting while a machine is suspended,
//! and which wall-clock jumps never move.

use haraft_core::BootTime;

pub fn boottime() -> BootTime {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_BOOTTIME exists on every Linux since 2.6.39");
    BootTime(ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000)
}

/// Wall-clock time for records an operator reads (history, identity);
/// never used for the lease.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
