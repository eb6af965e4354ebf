//! Per-user rate limit on VM actions: a token bucket per username. Pure: the caller
//! passes the time in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// At most this many users are tracked; past it, full buckets (users idle long enough
/// to have refilled) are forgotten, which changes no decision.
const MAX_USERS: usize = 10_000;

#[derive(Debug)]
pub struct Limiter {
    burst: f64,
    per_second: f64,
    buckets: HashMap<String, (f64, Instant)>,
}

impl Limiter {
    /// `burst` actions at once, then one every `every`.
    pub fn new(burst: u32, every: Duration) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_second: 1.0 / every.as_secs_f64().max(f64::EPSILON),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `user`: `Ok` if there was one, else how long until there is.
    pub fn take(&mut self, user: &str, now: Instant) -> Result<(), Duration> {
        if self.buckets.len() >= MAX_USERS && !self.buckets.contains_key(user) {
            let (burst, rate) = (self.burst, self.per_second);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            // Still full (many keys, all busy: a flood from many addresses): forget
            // the longest idle one, so memory stays bounded.
            if self.buckets.len() >= MAX_USERS
                && let Some(oldest) = self
                    .buckets
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
            {
                self.buckets.remove(&oldest);
            }
        }
        let (tokens, at) = self.buckets.entry(user.to_string()).or_insert((self.burst, now));
        let refilled =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval_per_user() {
        let mut l = Limiter::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take("alice", t0), Ok(()));
        }
        let wait = l.take("alice", t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert_eq!(l.take("bob", t0), Ok(()), "buckets are per user");
        assert!(l.take("alice", t0 + Duration::from_secs(5)).is_err());
        assert_eq!(l.take("alice", t0 + Duration::from_secs(10)), Ok(()));
        assert!(l.take("alice", t0 + Duration::from_secs(10)).is_err());
        // Idle long: back to a full burst, never more.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(l.take("alice", later), Ok(()));
        }
        assert!(l.take("alice", later).is_err());
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut l = Limiter::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..MAX_USERS {
            l.take(&format!("u{i}"), t0).unwrap();
        }
        // Everyone refilled: the next new user prunes them all.
        l.take("late", t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(l.buckets.len(), 1);
    }
}
