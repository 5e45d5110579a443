//! Which entries a prune removes, least recently used first (pure): shared
//! by environment images and cache volumes.

use std::time::{Duration, SystemTime};

/// Something a prune may remove: when it was last used and how big it is.
pub trait Prunable {
    /// When it was last used.
    fn last_used(&self) -> SystemTime;
    /// Its size in bytes.
    fn size(&self) -> u64;
    /// Orders entries last used at the same moment (e.g. by key), so the
    /// choice is deterministic.
    fn tie_break(&self) -> impl Ord + '_;
}

/// Indices into `items` of those to remove, least recently used first.
///
/// - `older_than`: every item not used for longer than this goes;
/// - `max_total`: then more go, least recently used first, until the sizes
///   of those left add up to at most this many bytes;
/// - neither given: every item goes.
pub fn select_lru<T: Prunable>(
    items: &[T],
    now: SystemTime,
    older_than: Option<Duration>,
    max_total: Option<u64>,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&items[a], &items[b]);
        (a.last_used(), a.tie_break()).cmp(&(b.last_used(), b.tie_break()))
    });
    if older_than.is_none() && max_total.is_none() {
        return order;
    }
    let mut chosen = vec![false; items.len()];
    if let Some(age) = older_than {
        for &i in &order {
            // A last use in the future (clock change) counts as fresh.
            let idle = now.duration_since(items[i].last_used()).unwrap_or_default();
            chosen[i] = idle > age;
        }
    }
    if let Some(max) = max_total {
        let mut kept: u64 = (0..items.len())
            .filter(|&i| !chosen[i])
            .map(|i| items[i].size())
            .sum();
        for &i in &order {
            if kept <= max {
                break;
            }
            if !chosen[i] {
                chosen[i] = true;
                kept -= items[i].size();
            }
        }
    }
    order.into_iter().filter(|&i| chosen[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    struct Item(&'static str, u64, u64);

    impl Prunable for Item {
        fn last_used(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(self.1)
        }
        fn size(&self) -> u64 {
            self.2
        }
        fn tie_break(&self) -> impl Ord + '_ {
            self.0
        }
    }

    fn names(items: &[Item], idx: Vec<usize>) -> Vec<&'static str> {
        idx.into_iter().map(|i| items[i].0).collect()
    }

    #[test]
    fn ties_break_by_key_and_size_limit_drops_lru_first() {
        let items = [Item("b", 1, 10), Item("a", 1, 10), Item("c", 0, 10)];
        let now = UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(
            names(&items, select_lru(&items, now, None, None)),
            ["c", "a", "b"]
        );
        assert_eq!(
            names(&items, select_lru(&items, now, None, Some(15))),
            ["c", "a"]
        );
        assert_eq!(
            names(
                &items,
                select_lru(&items, now, Some(Duration::from_secs(9)), None)
            ),
            ["c"]
        );
    }
}
