//! The status a controller last wrote, for reconciles that run on a stale cached object.
//!
//! kube-runtime hands a reconcile the reflector's copy of the object. A reconcile that
//! starts right after our own status write (another trigger: a Secret, a timer) may still
//! see the copy from before that write; planning against it rewrites the same status
//! again. Remembering the resourceVersion the write was planned from tells the two apart
//! exactly: the same resourceVersion means "the cache has not caught up", and the status
//! we wrote is the current one. Any other resourceVersion means the cache moved on and is
//! the truth again.

use std::collections::HashMap;
use std::sync::Mutex;

pub struct LastWritten<S> {
    /// Per object (its name; a recreated object has a new resourceVersion anyway): the
    /// resourceVersion the write was planned from, and what it wrote.
    by_name: Mutex<HashMap<String, (String, S)>>,
}

impl<S> Default for LastWritten<S> {
    fn default() -> Self {
        Self {
            by_name: Mutex::new(HashMap::new()),
        }
    }
}

impl<S: Clone> LastWritten<S> {
    /// What we wrote, if the cached copy at `resource_version` predates it; `None`: the
    /// cached copy is current.
    pub fn newer_than_cache(&self, name: &str, resource_version: &str) -> Option<S> {
        let mut map = self.by_name.lock().expect("last-written lock");
        match map.get(name) {
            Some((planned_from, written)) if planned_from == resource_version => Some(written.clone()),
            Some(_) => {
                map.remove(name);
                None
            }
            None => None,
        }
    }

    /// Records a successful write planned from `resource_version`.
    pub fn record(&self, name: &str, resource_version: &str, status: S) {
        self.by_name
            .lock()
            .expect("last-written lock")
            .insert(name.to_owned(), (resource_version.to_owned(), status));
    }

    /// Forgets every object but those `keep` names (the others were deleted).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.by_name
            .lock()
            .expect("last-written lock")
            .retain(|n, _| keep(n));
    }

    pub fn forget(&self, name: &str) {
        self.by_name.lock().expect("last-written lock").remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_that_has_not_caught_up_yields_the_written_status() {
        let w = LastWritten::<u32>::default();
        assert_eq!(w.newer_than_cache("a", "1"), None);
        w.record("a", "1", 8);
        assert_eq!(w.newer_than_cache("a", "1"), Some(8), "stale copy: ours");
        assert_eq!(w.newer_than_cache("a", "2"), None, "newer copy: the cache");
        assert_eq!(w.newer_than_cache("a", "1"), None, "forgotten once moved on");
        w.record("b", "5", 1);
        w.forget("b");
        assert_eq!(w.newer_than_cache("b", "5"), None);
    }
}
