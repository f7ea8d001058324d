//! Whether the storage under the database takes writes. A write that fails
//! because the disk is full, the file system or server is read-only, or the
//! disk fails puts the database "in trouble" (readiness fails, an alert is
//! raised); the next write that commits changes ends it. Only `db` sets it.

use std::sync::Mutex;

/// Storage trouble under way: since when, and the first error that said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trouble {
    pub since: String,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The trouble under way.
    current: Option<Trouble>,
    /// The latest episode, numbered from 1, ended or not: an episode can
    /// end before anyone looked (the storage watch alerts on it anyway).
    latest: Option<(u64, Trouble)>,
}

impl Health {
    /// The trouble under way, if any.
    pub fn trouble(&self) -> Option<Trouble> {
        self.lock().current.clone()
    }

    /// The latest episode of trouble, under way or ended, and its number.
    pub fn latest(&self) -> Option<(u64, Trouble)> {
        self.lock().latest.clone()
    }

    /// A write failed for want of storage. Logged once per episode.
    pub(crate) fn failed(&self, error: &str) {
        let mut state = self.lock();
        if state.current.is_none() {
            tracing::error!(error, "storage unavailable: writes fail until it takes them again");
            let trouble = Trouble { since: crate::db::now(), error: error.to_string() };
            let n = state.latest.as_ref().map_or(1, |(n, _)| n + 1);
            state.latest = Some((n, trouble.clone()));
            state.current = Some(trouble);
        }
    }

    /// A write committed changes: the storage takes writes (again).
    pub(crate) fn wrote(&self) {
        let mut state = self.lock();
        if let Some(ended) = state.current.take() {
            tracing::warn!(since = %ended.since, error = %ended.error, "storage takes writes again");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
