//! `UserProfile.status.lastSeen`: when the operator last authenticated the user (the
//! JSON API, the console, the aggregated API). Written at most once an hour per user, so
//! that a busy user costs the API server one write an hour, not one per request: the
//! inactive users report needs days, not seconds.

use crate::api::profile::UserProfile;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How stale `lastSeen` may grow before a request writes it again.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Its own field manager: the profile controller applies the rest of the status and
/// leaves this field to it (server-side apply keeps fields other managers own).
pub const FIELD_MANAGER: &str = "ganeti-operator-last-seen";

/// Where more profiles than this were written within the hour, older entries go.
const REMEMBERED: usize = 10_000;

/// The profiles of `user` whose `lastSeen` is due at `now`: theirs, and not written
/// within [`EVERY`] (as the watched copy says; another replica may have written it).
pub fn due<'p>(user: &str, profiles: &'p [Arc<UserProfile>], now: Timestamp) -> Vec<&'p str> {
    profiles
        .iter()
        .filter(|p| p.spec.username == user)
        .filter(|p| {
            let seen = p.status.as_ref().and_then(|s| s.last_seen.as_ref());
            seen.is_none_or(|t| now.duration_since(t.0).unsigned_abs() >= EVERY)
        })
        .filter_map(|p| p.metadata.name.as_deref())
        .collect()
}

/// Records users as they are authenticated, on every replica.
pub struct LastSeen {
    client: kube::Client,
    /// When this replica last wrote (or began to write) each profile: its own writes are
    /// not in the watched profiles yet for a moment. By profile, not by user: a user's
    /// profile made later is written at their next request, not an hour later.
    looked: Arc<Mutex<HashMap<String, Instant>>>,
}

impl LastSeen {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            looked: Arc::default(),
        }
    }

    /// `user` was authenticated now: write `lastSeen` of their due profiles, in the
    /// background (a request never waits on it, and a failed write is only logged).
    pub fn saw(&self, user: &str, profiles: &[Arc<UserProfile>]) {
        let at = Timestamp::now();
        for name in self.claim(user, profiles, Instant::now(), at) {
            let api = Api::<UserProfile>::all(self.client.clone());
            let looked = self.looked.clone();
            tokio::spawn(async move {
                let patch = serde_json::json!({
                    "apiVersion": "ganeti.dev/v1alpha1",
                    "kind": "UserProfile",
                    "status": {"lastSeen": at},
                });
                let params = PatchParams::apply(FIELD_MANAGER).force();
                match api.patch_status(&name, &params, &Patch::Apply(&patch)).await {
                    Ok(_) => tracing::debug!(profile = %name, "lastSeen written"),
                    Err(e) => {
                        // The next request tries again, rather than an hour later.
                        looked.lock().expect("lock").remove(&name);
                        tracing::info!(profile = %name, error = %e, "writing lastSeen failed");
                    }
                }
            });
        }
    }

    /// The due profiles of `user` this replica has not written within [`EVERY`], now
    /// marked as written.
    fn claim(&self, user: &str, profiles: &[Arc<UserProfile>], now: Instant, at: Timestamp) -> Vec<String> {
        let due = due(user, profiles, at);
        if due.is_empty() {
            return Vec::new();
        }
        let mut looked = self.looked.lock().expect("lock");
        if looked.len() >= REMEMBERED {
            looked.retain(|_, t| now.duration_since(*t) < EVERY);
        }
        let mut claimed = Vec::new();
        for name in due {
            if looked.get(name).is_none_or(|t| now.duration_since(*t) >= EVERY) {
                looked.insert(name.to_owned(), now);
                claimed.push(name.to_owned());
            }
        }
        claimed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::profile::UserProfileStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn profile(name: &str, user: &str, seen: Option<Timestamp>) -> Arc<UserProfile> {
        let mut p = UserProfile::for_tests(name, user, &[]);
        p.status = seen.map(|t| UserProfileStatus {
            last_seen: Some(Time(t)),
            ..Default::default()
        });
        Arc::new(p)
    }

    #[test]
    fn only_the_users_own_profiles_not_seen_within_the_hour_are_due() {
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let ago = |mins: i64| now - k8s_openapi::jiff::SignedDuration::from_mins(mins);
        let profiles = vec![
            profile("never", "alice", None),
            profile("recent", "alice", Some(ago(59))),
            profile("an-hour", "alice", Some(ago(60))),
            profile("old", "alice", Some(ago(60 * 24 * 90))),
            profile("bobs", "bob", None),
        ];
        assert_eq!(due("alice", &profiles, now), vec!["never", "an-hour", "old"]);
        assert_eq!(due("bob", &profiles, now), vec!["bobs"]);
        assert!(due("carol", &profiles, now).is_empty());
        // A clock that went back does not make a write due every request.
        assert!(
            due(
                "alice",
                &[profile(
                    "ahead",
                    "alice",
                    Some(now + k8s_openapi::jiff::SignedDuration::from_mins(5))
                )],
                now
            )
            .is_empty()
        );
    }

    #[tokio::test]
    async fn a_profile_made_later_is_written_at_the_next_request_and_each_once_an_hour() {
        // Never contacted: only the bookkeeping runs.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let seen = LastSeen::new(kube::Client::try_from(config).unwrap());
        let at: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let t0 = Instant::now();
        let first = vec![profile("alice-a", "alice", None)];
        assert_eq!(seen.claim("alice", &first, t0, at), ["alice-a"]);
        // Before the watch shows the write, a request does not write it again.
        assert!(
            seen.claim("alice", &first, t0 + Duration::from_secs(1), at)
                .is_empty()
        );
        // A second profile of the same user, seen a minute later, is written then.
        let both = vec![
            profile("alice-a", "alice", None),
            profile("alice-b", "alice", None),
        ];
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(seen.claim("alice", &both, t1, at), ["alice-b"]);
        assert!(seen.claim("bob", &both, t1, at).is_empty());
        // An hour on, a profile still due (the write was lost) is written again.
        assert_eq!(seen.claim("alice", &both, t0 + EVERY, at), ["alice-a"]);
    }
}
