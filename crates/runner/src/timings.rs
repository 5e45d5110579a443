//! Where the time of a run goes, host- and guest-side.

use std::time::Instant;

/// Raw timestamps collected during a run. Guest values are CLOCK_BOOTTIME
/// microseconds (zero at guest kernel start).
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub process_start: Option<Instant>,
    pub qemu_spawned: Option<Instant>,
    pub hello_at: Option<Instant>,
    pub init_start_us: u64,
    pub port_open_us: u64,
    pub ready_us: u64,
    pub first_command_start_us: Option<u64>,
    pub last_command_end_us: Option<u64>,
    pub last_exited_at: Option<Instant>,
    pub qemu_exited_at: Option<Instant>,
    /// The guest was restored from a snapshot (warm start): there was no
    /// kernel boot, and `init_start_us` is when the init took `Resume`.
    pub restored: bool,
}

/// Phases in milliseconds, for `--timings` and the benchmark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phases {
    /// vmbuild start until QEMU is spawned (assets, sockets, virtiofsd).
    pub host_setup_ms: f64,
    /// Guest kernel start until the init's `main` runs.
    pub kernel_to_init_ms: f64,
    /// Init start until the first command is spawned (mounts, modules, setup).
    pub init_to_command_ms: f64,
    /// First command start until the last command ended.
    pub commands_ms: f64,
    /// Last command's exit status reached the host until QEMU exited.
    pub command_end_to_exit_ms: f64,
    /// vmbuild start until QEMU exited.
    pub total_ms: f64,
    /// Restored from a snapshot instead of booted (docs/warm-start.md).
    pub restored: bool,
}

fn ms(a: Option<Instant>, b: Option<Instant>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) if b >= a => (b - a).as_secs_f64() * 1000.0,
        _ => 0.0,
    }
}

impl Timings {
    pub fn phases(&self) -> Phases {
        let us = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1000.0;
        Phases {
            host_setup_ms: ms(self.process_start, self.qemu_spawned),
            kernel_to_init_ms: if self.restored {
                0.0
            } else {
                self.init_start_us as f64 / 1000.0
            },
            init_to_command_ms: self
                .first_command_start_us
                .map(|s| us(self.init_start_us, s))
                .unwrap_or(0.0),
            commands_ms: match (self.first_command_start_us, self.last_command_end_us) {
                (Some(s), Some(e)) => us(s, e),
                _ => 0.0,
            },
            command_end_to_exit_ms: ms(self.last_exited_at, self.qemu_exited_at),
            total_ms: ms(self.process_start, self.qemu_exited_at),
            restored: self.restored,
        }
    }
}

impl Phases {
    /// One line of JSON (hand-written: six numbers do not need serde here).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"host_setup_ms\":{:.1},\"kernel_to_init_ms\":{:.1},\"init_to_command_ms\":{:.1},\"commands_ms\":{:.1},\"command_end_to_exit_ms\":{:.1},\"total_ms\":{:.1},\"restored\":{}}}",
            self.host_setup_ms,
            self.kernel_to_init_ms,
            self.init_to_command_ms,
            self.commands_ms,
            self.command_end_to_exit_ms,
            self.total_ms,
            self.restored
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn phases_from_timestamps() {
        let t0 = Instant::now();
        let t = Timings {
            process_start: Some(t0),
            qemu_spawned: Some(t0 + Duration::from_millis(40)),
            init_start_us: 1_200_000,
            port_open_us: 1_250_000,
            first_command_start_us: Some(1_300_000),
            last_command_end_us: Some(1_310_000),
            last_exited_at: Some(t0 + Duration::from_millis(1500)),
            qemu_exited_at: Some(t0 + Duration::from_millis(1600)),
            ..Default::default()
        };
        let p = t.phases();
        assert_eq!(p.host_setup_ms.round(), 40.0);
        assert_eq!(p.kernel_to_init_ms, 1200.0);
        assert_eq!(p.init_to_command_ms, 100.0);
        assert_eq!(p.commands_ms, 10.0);
        assert_eq!(p.command_end_to_exit_ms.round(), 100.0);
        assert_eq!(p.total_ms.round(), 1600.0);
        assert!(p.to_json().contains("\"init_to_command_ms\":100.0"));
    }

    #[test]
    fn missing_timestamps_give_zero_not_garbage() {
        let p = Timings::default().phases();
        assert_eq!(p, Phases::default());
    }
}
