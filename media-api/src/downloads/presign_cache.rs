//! The presigned URLs of the current signing window, kept so that each is
//! signed once per window.

/// The presigned URLs of the current signing window, by what they sign.
/// Within a window the same request gets the same URL, so it need only be
/// signed once; and signing through the S3 SDK runs its whole request
/// pipeline (endpoint rules included), the largest cost of a redirect.
/// A new window, or a full cache, starts it afresh: it holds at most
/// `max` URLs (`download_url_cache`; each 400–550 bytes with its key, so
/// the default 20,000 is 8–11 MiB at its fullest: load/RESULTS.md, the
/// soak), none if `max` is 0.
#[derive(Debug)]
pub struct PresignCache {
    max: usize,
    entries: std::sync::Mutex<(u64, std::collections::HashMap<String, String>)>,
}

impl PresignCache {
    /// An empty cache that will hold at most `max` URLs.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            entries: std::sync::Mutex::default(),
        }
    }

    pub(super) fn get(&self, window: u64, what: &str) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        (entries.0 == window)
            .then(|| entries.1.get(what).cloned())
            .flatten()
    }

    pub(super) fn put(&self, window: u64, what: String, url: String) {
        if self.max == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.0 != window || entries.1.len() >= self.max {
            // A fresh map, not a cleared one: a cleared map keeps the
            // table it grew to.
            entries.1 = std::collections::HashMap::new();
            entries.0 = window;
        }
        entries.1.insert(what, url);
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
    }

    #[test]
    fn the_presign_cache_never_holds_more_than_its_cap() {
        let max = 1_000;
        let cache = PresignCache::new(max);
        for i in 0..max {
            cache.put(7, format!("k{i}"), format!("u{i}"));
        }
        let held = |c: &PresignCache| c.entries.lock().map(|e| e.1.len()).unwrap_or(0);
        assert_eq!(held(&cache), max);
        assert_eq!(cache.get(7, "k0").as_deref(), Some("u0"));
        // One more starts the window's cache afresh, with just that one.
        cache.put(7, "one-more".into(), "u".into());
        assert_eq!(held(&cache), 1);
        assert_eq!(cache.get(7, "k0"), None);
        assert_eq!(cache.get(7, "one-more").as_deref(), Some("u"));
    }

    #[test]
    fn a_cache_of_none_signs_every_time() {
        let cache = PresignCache::new(0);
        cache.put(7, "a".into(), "url-a".into());
        assert_eq!(cache.get(7, "a"), None);
    }
}
