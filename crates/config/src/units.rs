//! Value forms: durations (`600`, `10m`, `1h30m`), memory sizes (`2Gi`,
//! `512Mi`, `2G`, `2048`) and CPU counts. Errors are plain strings that say
//! what is accepted; the caller adds the location.

use std::time::Duration;

/// A duration: a bare number of seconds (melange's form, `600`), or one or
/// more `<number><unit>` parts with units `h`, `m`, `s`, `ms` (`10m`,
/// `1h30m`, `1.5h`, `90s`). Must be more than zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{}` is not a duration; use seconds (`600`) or a number with a unit h, m, s or ms (`10m`, `1h30m`, `45s`)",
            crate::error::show(text)
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    let total = if t.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = t.parse().map_err(|_| bad())?;
        Duration::from_secs(secs)
    } else {
        let mut total = Duration::ZERO;
        let mut rest = t;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            let (num, after) = rest.split_at(num_len);
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_len);
            let unit_ms: u64 = match unit {
                "h" => 3_600_000,
                "m" => 60_000,
                "s" => 1_000,
                "ms" => 1,
                _ => return Err(bad()),
            };
            let ms = decimal_times(num, unit_ms).ok_or_else(bad)?;
            total = total
                .checked_add(Duration::from_millis(ms))
                .ok_or_else(bad)?;
            rest = next;
        }
        total
    };
    if total.is_zero() {
        return Err(format!(
            "`{}` is zero; a timeout must be more than zero",
            crate::error::show(text)
        ));
    }
    Ok(total)
}

/// A memory size in MiB (rounded up). Units: `Ki`, `Mi`, `Gi`, `Ti`
/// (powers of 1024) and `K`, `M`, `G`, `T` (powers of 1000, as in
/// Kubernetes and melange), each optionally followed by `B`. A bare number
/// means MiB (as QEMU's `-m`).
pub fn parse_memory_mib(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{}` is not a memory size; use a number with a unit Mi, Gi, M or G (`2Gi`, `512Mi`), or a bare number of MiB",
            crate::error::show(text)
        )
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('B').unwrap_or(unit);
    let bytes_per_unit: u64 = match unit {
        "" => 1 << 20,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    if num.is_empty() {
        return Err(bad());
    }
    // Work in thousandths of a byte-unit to allow `1.5Gi` without floats.
    let milli = decimal_times(num, 1000).ok_or_else(bad)?;
    let bytes = u128::from(milli) * u128::from(bytes_per_unit) / 1000;
    let mib = bytes.div_ceil(1 << 20);
    if mib == 0 {
        return Err(format!(
            "`{}` is zero; memory must be more than zero",
            crate::error::show(text)
        ));
    }
    u32::try_from(mib).map_err(|_| format!("`{}` is too large", crate::error::show(text)))
}

/// A whole, positive number of CPUs.
pub fn parse_cpus(text: &str) -> Result<u32, String> {
    let t = text.trim();
    match t.parse::<u32>() {
        Ok(0) => Err("cpu must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "`{}` is not a CPU count; use a whole number such as `2` (fractions like `500m` are not supported)",
            crate::error::show(text)
        )),
    }
}

/// `num` (digits with at most one `.`) times `scale`, rounded down;
/// `None` on a malformed number or overflow.
fn decimal_times(num: &str, scale: u64) -> Option<u64> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int_val: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut v = int_val.checked_mul(scale)?;
    let mut div = 1u64;
    let mut frac_val = 0u64;
    for b in frac.bytes().take(9) {
        div *= 10;
        frac_val = frac_val * 10 + u64::from(b - b'0');
    }
    v = v.checked_add(frac_val.checked_mul(scale)? / div)?;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        for bad in [
            "",
            "m",
            "10x",
            "ten",
            "1h 30m",
            "-5",
            "1..5s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("0").unwrap_err().contains("zero"));
        assert!(parse_duration("0s").unwrap_err().contains("zero"));
    }

    #[test]
    fn memory() {
        assert_eq!(parse_memory_mib("2Gi"), Ok(2048));
        assert_eq!(parse_memory_mib("512Mi"), Ok(512));
        assert_eq!(parse_memory_mib("2048"), Ok(2048));
        assert_eq!(parse_memory_mib("1.5Gi"), Ok(1536));
        assert_eq!(parse_memory_mib("2GiB"), Ok(2048));
        assert_eq!(parse_memory_mib("1Ti"), Ok(1 << 20));
        // Decimal units round up to whole MiB.
        assert_eq!(parse_memory_mib("2G"), Ok(1908));
        assert_eq!(parse_memory_mib("1M"), Ok(1));
        assert_eq!(parse_memory_mib("1Ki"), Ok(1));
        for bad in ["", "Gi", "2 Xi", "two", "-1Gi", "0", "0Mi", "99999999999Ti"] {
            assert!(parse_memory_mib(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("2"), Ok(2));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("500m").unwrap_err().contains("fractions"));
        assert!(parse_cpus("-1").is_err());
    }
}
