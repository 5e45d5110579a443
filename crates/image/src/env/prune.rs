//! Which images `prune` removes (pure).

use std::time::{Duration, SystemTime};

use super::image::EnvImage;

/// Indices into `images` of those to remove, least recently used first.
///
/// - `older_than`: every image not used for longer than this goes;
/// - `max_total`: then more go, least recently used first, until the sizes
///   of those left add up to at most this many bytes;
/// - neither given: every image goes.
pub fn select_prune(
    images: &[EnvImage],
    now: SystemTime,
    older_than: Option<Duration>,
    max_total: Option<u64>,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..images.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&images[a], &images[b]);
        (a.last_used, a.created, &a.key).cmp(&(b.last_used, b.created, &b.key))
    });
    if older_than.is_none() && max_total.is_none() {
        return order;
    }
    let mut chosen = vec![false; images.len()];
    if let Some(age) = older_than {
        for &i in &order {
            // A last use in the future (clock change) counts as fresh.
            let idle = now.duration_since(images[i].last_used).unwrap_or_default();
            chosen[i] = idle > age;
        }
    }
    if let Some(max) = max_total {
        let mut kept: u64 = (0..images.len())
            .filter(|&i| !chosen[i])
            .map(|i| images[i].size)
            .sum();
        for &i in &order {
            if kept <= max {
                break;
            }
            if !chosen[i] {
                chosen[i] = true;
                kept -= images[i].size;
            }
        }
    }
    order.into_iter().filter(|&i| chosen[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{EnvSpec, ImageFormat};
    use std::time::UNIX_EPOCH;

    const DAY: u64 = 86_400;

    /// An image built at day 0, last used `used_days` after the epoch.
    fn img(key: &str, used_days: u64, size: u64) -> EnvImage {
        EnvImage {
            path: format!("/c/images/{key}/rootfs.erofs").into(),
            format: ImageFormat::Erofs,
            key: key.into(),
            size,
            spec: EnvSpec::new([key]),
            created: UNIX_EPOCH,
            last_used: UNIX_EPOCH + Duration::from_secs(used_days * DAY),
        }
    }

    fn keys(images: &[EnvImage], idx: Vec<usize>) -> Vec<&str> {
        idx.into_iter().map(|i| images[i].key.as_str()).collect()
    }

    fn now(days: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(days * DAY)
    }

    #[test]
    fn nothing_given_removes_all_lru_first() {
        let imgs = [img("b", 5, 10), img("a", 1, 10), img("c", 9, 10)];
        assert_eq!(
            keys(&imgs, select_prune(&imgs, now(10), None, None)),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn by_age() {
        let imgs = [img("old", 1, 10), img("new", 9, 10), img("mid", 5, 10)];
        let age = Some(Duration::from_secs(4 * DAY));
        assert_eq!(
            keys(&imgs, select_prune(&imgs, now(10), age, None)),
            ["old", "mid"]
        );
        // Exactly at the limit stays.
        let age = Some(Duration::from_secs(5 * DAY));
        assert_eq!(
            keys(&imgs, select_prune(&imgs, now(10), age, None)),
            ["old"]
        );
        // Used "in the future" stays.
        assert!(select_prune(&imgs, now(0), Some(Duration::ZERO), None).is_empty());
    }

    #[test]
    fn by_total_size_lru_first() {
        let imgs = [
            img("a", 3, 100),
            img("b", 1, 50),
            img("c", 2, 70),
            img("d", 4, 30),
        ];
        // 250 in all; at most 120 may stay: drop b (50) -> 200, c (70) -> 130, a (100) -> 30.
        assert_eq!(
            keys(&imgs, select_prune(&imgs, now(5), None, Some(120))),
            ["b", "c", "a"]
        );
        assert_eq!(
            keys(&imgs, select_prune(&imgs, now(5), None, Some(130))),
            ["b", "c"]
        );
        assert!(select_prune(&imgs, now(5), None, Some(250)).is_empty());
        assert_eq!(select_prune(&imgs, now(5), None, Some(0)).len(), 4);
    }

    #[test]
    fn age_then_size() {
        let imgs = [img("old", 1, 100), img("x", 8, 100), img("y", 9, 100)];
        // old goes by age; then 200 left > 150, so x (LRU of the rest) goes.
        let r = select_prune(
            &imgs,
            now(10),
            Some(Duration::from_secs(5 * DAY)),
            Some(150),
        );
        assert_eq!(keys(&imgs, r), ["old", "x"]);
        let r = select_prune(
            &imgs,
            now(10),
            Some(Duration::from_secs(5 * DAY)),
            Some(200),
        );
        assert_eq!(keys(&imgs, r), ["old"]);
    }
}
