//! Parsers for flag values (pure, unit-tested): durations, ages, sizes, K=V.

use std::time::Duration;

/// `300`, `300s`, `5m`, `1h`, `1.5s` -> seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1.0),
        Some((i, 'm')) => (&s[..i], 60.0),
        Some((i, 'h')) => (&s[..i], 3600.0),
        _ => (s, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use seconds (300), or 300s, 5m, 1h"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("invalid duration {s:?}: must be greater than zero"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// `1024` (MiB), `512M`, `2G` -> MiB.
pub fn parse_memory(s: &str) -> Result<u32, String> {
    let t = s.trim();
    // melange's forms (`2Gi`, `512Mi`), as a config's resources.memory.
    if t.ends_with('i') {
        return vmbuild_config::parse_memory_mib(t);
    }
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'G' | 'g')) => (&t[..i], 1024),
        Some((i, 'M' | 'm')) => (&t[..i], 1),
        _ => (t, 1),
    };
    let v: u32 = num
        .parse()
        .map_err(|_| format!("invalid memory size {s:?}: use MiB (1024) or 512M, 2G"))?;
    let mib = v
        .checked_mul(mult)
        .ok_or_else(|| format!("memory size {s:?} is too large"))?;
    if mib < 128 {
        return Err(format!(
            "memory size {s:?} is too small: the guest needs at least 128M"
        ));
    }
    Ok(mib)
}

/// `KEY=VALUE` (VALUE may be empty or contain `=`).
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid --env {s:?}: expected KEY=VALUE"))?;
    let valid = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "invalid --env {s:?}: {k:?} is not a valid variable name"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// 1..=64 vCPUs.
pub fn parse_cpus(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!("invalid --cpus {s:?}: use a number from 1 to 64")),
    }
}

/// `30d`, `12h`, `90m`, `45s`, or seconds.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    match t.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .map(|d| Duration::from_secs(d * 86400))
            .map_err(|_| format!("invalid age {s:?}: use 30d, 12h, 90m or seconds")),
        None => parse_duration(t),
    }
}

/// `500M`, `20G`, `1T`, or bytes, in binary units; melange's (Kubernetes
/// quantity) forms `500Mi`, `20Gi` mean the same.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = match t.strip_suffix('i') {
        Some(u) if u.ends_with(['K', 'k', 'M', 'm', 'G', 'g', 'T', 't']) => u,
        _ => t,
    };
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        Some((i, 'T' | 't')) => (&t[..i], 1 << 40),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid size {s:?}: use bytes or 500M, 20G, 1T"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-3").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn memory() {
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert_eq!(parse_memory("2G").unwrap(), 2048);
        assert_eq!(parse_memory("512m").unwrap(), 512);
        assert!(parse_memory("64M").unwrap_err().contains("too small"));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("9999999G").unwrap_err().contains("too large"));
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("EMPTY=").unwrap(), ("EMPTY".into(), "".into()));
        assert!(parse_env("NOEQ").is_err());
        assert!(parse_env("=x").is_err());
        assert!(parse_env("1A=x").is_err());
        assert!(parse_env("A-B=x").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("2").unwrap(), 2);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("65").is_err());
    }

    #[test]
    fn ages_and_sizes() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert_eq!(parse_age("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_age("soon").is_err());
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("20Gi").unwrap(), 20 << 30);
        assert_eq!(parse_size("500Mi").unwrap(), 500 << 20);
        assert!(parse_size("20i").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
