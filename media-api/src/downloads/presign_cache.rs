//! The presigned URLs of the current signing window, kept so that each is
//! signed once per window.

use std::collections::HashMap;
use std::sync::Mutex;

/// The presigned URLs of the current signing window, by what they sign.
/// Within a window the same request gets the same URL, so it need only be
/// signed once; and signing through the S3 SDK runs its whole request
/// pipeline (endpoint rules included), the largest cost of a redirect.
///
/// It holds at most `max` URLs (`download_url_cache`; each 400–550 bytes
/// with its key, so the default 20,000 is 8–11 MiB at its fullest:
/// load/RESULTS.md, the soak), none if `max` is 0. New URLs go into a young
/// generation of `max / 2`; when it is full it becomes the old one (the
/// previous old one is dropped) and a new young one starts. A URL found in
/// the old generation moves back to the young one, so what is asked for
/// again and again stays signed however many other URLs pass through, and
/// a full cache never drops everything at once. A new window starts afresh.
#[derive(Debug)]
pub struct PresignCache {
    max: usize,
    entries: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    window: u64,
    young: HashMap<String, String>,
    old: HashMap<String, String>,
}

impl PresignCache {
    /// An empty cache that will hold at most `max` URLs.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            entries: Mutex::default(),
        }
    }

    pub(super) fn get(&self, window: u64, what: &str) -> Option<String> {
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if g.window != window {
            return None;
        }
        if let Some(url) = g.young.get(what) {
            return Some(url.clone());
        }
        let (what, url) = g.old.remove_entry(what)?;
        self.insert(&mut g, what, url.clone());
        Some(url)
    }

    pub(super) fn put(&self, window: u64, what: String, url: String) {
        if self.max == 0 {
            return;
        }
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if g.window != window {
            *g = Generations {
                window,
                ..Generations::default()
            };
        }
        self.insert(&mut g, what, url);
    }

    fn insert(&self, g: &mut Generations, what: String, url: String) {
        let young_max = (self.max / 2).max(1);
        if g.young.len() >= young_max {
            // The young generation ages; only as much is kept as `max` allows.
            let young = std::mem::take(&mut g.young);
            g.old = if self.max - young_max >= young.len() {
                young
            } else {
                HashMap::new()
            };
        }
        g.young.insert(what, url);
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        let g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        g.young.len() + g.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_presign_cache_holds_one_window() {
        let cache = PresignCache::new(10);
        cache.put(100, "a".into(), "url-a".into());
        assert_eq!(cache.get(100, "a").as_deref(), Some("url-a"));
        assert_eq!(cache.get(100, "b"), None);
        // The next window's requests are signed afresh.
        assert_eq!(cache.get(200, "a"), None);
        cache.put(200, "b".into(), "url-b".into());
        assert_eq!(cache.get(100, "a"), None);
        assert_eq!(cache.get(200, "b").as_deref(), Some("url-b"));
        assert_eq!(cache.held(), 1, "the old window's URLs went");
    }

    #[test]
    fn the_presign_cache_never_holds_more_than_its_bound() {
        for max in [1, 2, 3, 1_000, 1_001] {
            let cache = PresignCache::new(max);
            for i in 0..3 * max + 7 {
                cache.put(7, format!("k{i}"), format!("u{i}"));
                assert!(cache.held() <= max, "max {max}: {} held", cache.held());
            }
            assert!(cache.held() >= max / 2, "max {max}: only {}", cache.held());
        }
    }

    #[test]
    fn a_url_asked_for_again_stays_while_others_pass_through() {
        let cache = PresignCache::new(100);
        cache.put(7, "hot".into(), "u-hot".into());
        for i in 0..1_000 {
            cache.put(7, format!("k{i}"), format!("u{i}"));
            if i % 40 == 0 {
                assert_eq!(cache.get(7, "hot").as_deref(), Some("u-hot"), "after {i}");
            }
        }
        // One asked for once is gone after twice the bound of others.
        assert_eq!(cache.get(7, "k0"), None);
        assert_eq!(cache.get(7, "k999").as_deref(), Some("u999"));
    }

    #[test]
    fn a_cache_of_none_signs_every_time() {
        let cache = PresignCache::new(0);
        cache.put(7, "a".into(), "url-a".into());
        assert_eq!(cache.get(7, "a"), None);
    }
}
