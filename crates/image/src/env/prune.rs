//! Which images `prune` removes (pure): [`vmbuild_store::select_lru`] on
//! [`EnvImage`]s, ties broken by creation time, then key.

use std::time::{Duration, SystemTime};

use vmbuild_store::{select_lru, Prunable};

use super::image::EnvImage;

impl Prunable for EnvImage {
    fn last_used(&self) -> SystemTime {
        self.last_used
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn tie_break(&self) -> impl Ord + '_ {
        (self.created, &self.key)
    }
}

/// Indices into `images` of those to remove, least recently used first
/// (see [`select_lru`]: `older_than`, then `max_total` bytes; neither
/// given: all).
pub fn select_prune(
    images: &[EnvImage],
    now: SystemTime,
    older_than: Option<Duration>,
    max_total: Option<u64>,
) -> Vec<usize> {
    select_lru(images, now, older_than, max_total)
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
