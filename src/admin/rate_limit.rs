//! Login rate limiting: at most `attempts` failed sign-ins per key (a client
//! address, an email) in a fixed window. Memory is bounded: at most
//! `MAX_KEYS` keys are tracked; when full, expired windows go first, then
//! the oldest window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

pub struct LoginLimiter {
    windows: Mutex<HashMap<String, Window>>,
    attempts: u32,
    window: Duration,
    max_keys: usize,
}

impl LoginLimiter {
    pub fn new(attempts: u32, window: Duration) -> LoginLimiter {
        Self::with_capacity(attempts, window, MAX_KEYS)
    }

    pub fn with_capacity(attempts: u32, window: Duration, max_keys: usize) -> LoginLimiter {
        LoginLimiter { windows: Mutex::new(HashMap::new()), attempts, window, max_keys: max_keys.max(1) }
    }

    /// None if every key may try now; otherwise how long until the
    /// longest-blocked one may.
    pub fn blocked_for(&self, keys: &[&str]) -> Option<Duration> {
        let now = Instant::now();
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| windows.get(*k))
            .filter(|w| now.duration_since(w.started) < self.window && w.failures >= self.attempts)
            .map(|w| self.window - now.duration_since(w.started))
            .max()
    }

    pub fn record_failure(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if !windows.contains_key(*key) && windows.len() >= self.max_keys {
                self.make_room(&mut windows, now);
            }
            let w = windows.entry((*key).to_string()).or_insert(Window { started: now, failures: 0 });
            if now.duration_since(w.started) >= self.window {
                *w = Window { started: now, failures: 0 };
            }
            w.failures = w.failures.saturating_add(1);
        }
    }

    /// A successful sign-in clears its email's failures (not its address's).
    pub fn clear(&self, key: &str) {
        self.windows.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    pub fn tracked(&self) -> usize {
        self.windows.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn make_room(&self, windows: &mut HashMap<String, Window>, now: Instant) {
        windows.retain(|_, w| now.duration_since(w.started) < self.window);
        if windows.len() >= self.max_keys {
            let oldest = windows.iter().min_by_key(|(_, w)| w.started).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                windows.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_allowed_failures_and_only_that_key() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limiter.blocked_for(&["ip:1", "email:a"]).is_none());
            limiter.record_failure(&["ip:1", "email:a"]);
        }
        assert!(limiter.blocked_for(&["ip:1", "email:b"]).is_some(), "the address is blocked");
        assert!(limiter.blocked_for(&["ip:2", "email:a"]).is_some(), "the email is blocked");
        assert!(limiter.blocked_for(&["ip:2", "email:b"]).is_none());
        limiter.clear("email:a");
        assert!(limiter.blocked_for(&["ip:2", "email:a"]).is_none());
    }

    #[test]
    fn a_window_ends() {
        let limiter = LoginLimiter::new(1, Duration::from_millis(20));
        limiter.record_failure(&["k"]);
        assert!(limiter.blocked_for(&["k"]).is_some());
        std::thread::sleep(Duration::from_millis(25));
        assert!(limiter.blocked_for(&["k"]).is_none());
        limiter.record_failure(&["k"]);
        assert!(limiter.blocked_for(&["k"]).is_some(), "a new window starts");
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = LoginLimiter::with_capacity(5, Duration::from_secs(60), 100);
        for i in 0..10_000 {
            limiter.record_failure(&[&format!("email:{i}")]);
        }
        assert!(limiter.tracked() <= 100);
        for _ in 0..5 {
            limiter.record_failure(&["email:latest"]);
        }
        assert!(limiter.blocked_for(&["email:latest"]).is_some(), "recent keys are still limited");
    }
}
