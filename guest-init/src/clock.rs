//! CLOCK_BOOTTIME in microseconds: the time base of every timestamp the init
//! reports (it counts from kernel start, so host and guest logs line up).

use nix::time::{clock_gettime, ClockId};

/// Microseconds since boot; 0 if the clock cannot be read (never on Linux).
pub fn boottime_us() -> u64 {
    match clock_gettime(ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => {
            let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(ts.tv_nsec()).unwrap_or(0);
            secs * 1_000_000 + nanos / 1_000
        }
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_is_monotonic_and_nonzero() {
        let a = boottime_us();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = boottime_us();
        assert!(a > 0);
        assert!(b >= a + 2_000, "{a} -> {b}");
    }
}
