//! Who is calling: the bearer token, checked with the Kubernetes TokenReview API, and
//! remembered for a short while so a burst of requests costs one review.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An authenticated requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// How long a review's answer is reused: a revoked token keeps working at most this long.
pub const ACCEPTED_TTL: Duration = Duration::from_secs(30);
/// A refused token is remembered shorter (a token may be created just after a failure).
pub const REFUSED_TTL: Duration = Duration::from_secs(5);
/// At most this many tokens are remembered.
pub const MAX_ENTRIES: usize = 4096;

/// Answers of past reviews, keyed by the token's SHA-256 (the tokens themselves are
/// never kept). Pure: the caller passes the time in.
#[derive(Debug, Default)]
pub struct TokenCache(HashMap<[u8; 32], (Instant, Option<Identity>)>);

impl TokenCache {
    pub fn key(token: &str) -> [u8; 32] {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        digest.as_ref().try_into().expect("SHA-256 has 32 bytes")
    }

    /// `Some(answer)` while a review's answer is fresh.
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Option<Identity>> {
        self.0
            .get(key)
            .filter(|(until, _)| now < *until)
            .map(|(_, answer)| answer.clone())
    }

    pub fn put(&mut self, key: [u8; 32], answer: Option<Identity>, now: Instant) {
        if self.0.len() >= MAX_ENTRIES {
            self.0.retain(|_, (until, _)| now < *until);
            if self.0.len() >= MAX_ENTRIES {
                // All fresh (a flood of distinct tokens): start over rather than grow.
                self.0.clear();
            }
        }
        let ttl = if answer.is_some() {
            ACCEPTED_TTL
        } else {
            REFUSED_TTL
        };
        self.0.insert(key, (now + ttl, answer));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reviews tokens, through the cache.
pub struct Authenticator {
    client: kube::Client,
    /// The audiences a token must be good for (empty: the API server's own). A
    /// dedicated one (`kubectl create token SA --audience ganeti-operator`) means a
    /// token sent here is useless against the API server, and the reverse.
    audiences: Vec<String>,
    cache: Mutex<TokenCache>,
}

impl Authenticator {
    pub fn new(client: kube::Client, audiences: Vec<String>) -> Self {
        Self {
            client,
            audiences,
            cache: Mutex::default(),
        }
    }

    /// `Ok(None)`: the API server does not accept the token.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Identity>, kube::Error> {
        let key = TokenCache::key(token);
        if let Some(answer) = self.cache.lock().expect("token cache").get(&key, Instant::now()) {
            return Ok(answer);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(self.audiences.clone()).filter(|a| !a.is_empty()),
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let reviewed = api.create(&PostParams::default(), &review).await?;
        let audiences = &self.audiences;
        let answer = reviewed
            .status
            .filter(|s| s.authenticated == Some(true))
            // The API server answers with the requested audiences the token is good for.
            .filter(|s| {
                audiences.is_empty()
                    || s.audiences
                        .as_ref()
                        .is_some_and(|a| a.iter().any(|x| audiences.contains(x)))
            })
            .and_then(|s| s.user)
            .and_then(|u| {
                Some(Identity {
                    user: u.username.filter(|n| !n.is_empty())?,
                    groups: u.groups.unwrap_or_default(),
                })
            });
        self.cache
            .lock()
            .expect("token cache")
            .put(key, answer.clone(), Instant::now());
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Option<Identity> {
        Some(Identity {
            user: "alice".into(),
            groups: vec!["staff".into()],
        })
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn answers_expire_and_refusals_sooner() {
        let mut c = TokenCache::default();
        let t0 = Instant::now();
        let (a, b) = (TokenCache::key("good"), TokenCache::key("bad"));
        assert_ne!(a, b);
        c.put(a, alice(), t0);
        c.put(b, None, t0);
        assert_eq!(c.get(&a, t0 + Duration::from_secs(29)), Some(alice()));
        assert_eq!(c.get(&b, t0 + Duration::from_secs(4)), Some(None));
        assert_eq!(c.get(&b, t0 + REFUSED_TTL), None);
        assert_eq!(c.get(&a, t0 + ACCEPTED_TTL), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut c = TokenCache::default();
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES {
            c.put(TokenCache::key(&i.to_string()), alice(), t0);
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        // Full of expired entries: they go, the new one stays.
        c.put(TokenCache::key("late"), alice(), t0 + ACCEPTED_TTL);
        assert_eq!(c.len(), 1);
        // Full of fresh entries: start over rather than grow.
        for i in 0..MAX_ENTRIES + 10 {
            c.put(TokenCache::key(&i.to_string()), alice(), t0);
        }
        assert!(c.len() <= MAX_ENTRIES);
    }
}
