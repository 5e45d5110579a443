//! The plain progress lines' wording (no control characters unless
//! colour was asked for).

use std::time::Duration;

use crate::human::human_size;

/// How often a plain line repeats the progress of one operation.
pub const PLAIN_EVERY: Duration = Duration::from_secs(3);

/// An operation starting: `downloading linux-image 6.1 (65.8 MiB)`.
pub fn begin(what: &str, total: Option<u64>) -> String {
    match total {
        Some(t) => format!("{what} ({})", human_size(t)),
        None => what.to_string(),
    }
}

/// Bytes on the way: `WHAT: 12.0 MiB of 65.8 MiB, 4.0 MiB/s`.
pub fn bytes(what: &str, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let rate = human_size(rate(done, elapsed));
    match total {
        Some(t) => format!(
            "{what}: {} of {}, {rate}/s",
            human_size(done),
            human_size(t)
        ),
        None => format!("{what}: {}, {rate}/s", human_size(done)),
    }
}

/// An operation with bytes finished: `WHAT: 65.8 MiB in 12.3s`.
pub fn done(what: &str, done: u64, elapsed: Duration) -> String {
    format!(
        "{what}: {} in {:.1}s",
        human_size(done),
        elapsed.as_secs_f64()
    )
}

/// Bytes per second (0 in the first millisecond).
pub fn rate(done: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs < 1e-3 {
        0
    } else {
        (done as f64 / secs) as u64
    }
}

/// `line` in bold when `color`: how `--color always` marks progress in
/// plain output.
pub fn paint(line: String, color: bool) -> String {
    if color {
        console::style(line).bold().force_styling(true).to_string()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_how_much_and_how_fast() {
        assert_eq!(
            begin("downloading linux-image 6.1", Some(3 << 20)),
            "downloading linux-image 6.1 (3.0 MiB)"
        );
        assert_eq!(begin("unpacking x.deb", None), "unpacking x.deb");
        assert_eq!(
            bytes("pushing", 1 << 20, Some(4 << 20), Duration::from_secs(2)),
            "pushing: 1.0 MiB of 4.0 MiB, 512 KiB/s"
        );
        assert_eq!(
            bytes("importing", 2048, None, Duration::ZERO),
            "importing: 2.0 KiB, 0 B/s"
        );
        assert_eq!(
            done("downloading k", 3 << 20, Duration::from_millis(1500)),
            "downloading k: 3.0 MiB in 1.5s"
        );
    }

    #[test]
    fn plain_lines_have_no_control_characters_unless_coloured() {
        let l = bytes("pulling", 10, Some(20), Duration::from_secs(1));
        assert_eq!(paint(l.clone(), false), l);
        assert!(!l.chars().any(char::is_control), "{l:?}");
        let c = paint(l.clone(), true);
        assert!(c.starts_with("\x1b[1m") && c.contains(&l), "{c:?}");
    }
}
