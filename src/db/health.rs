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
    trouble: Mutex<Option<Trouble>>,
}

impl Health {
    /// The trouble under way, if any.
    pub fn trouble(&self) -> Option<Trouble> {
        self.lock().clone()
    }

    /// A write failed for want of storage. Logged once per episode.
    pub(crate) fn failed(&self, error: &str) {
        let mut trouble = self.lock();
        if trouble.is_none() {
            tracing::error!(error, "storage unavailable: writes fail until it takes them again");
            *trouble = Some(Trouble { since: crate::db::now(), error: error.to_string() });
        }
    }

    /// A write committed changes: the storage takes writes (again).
    pub(crate) fn wrote(&self) {
        let mut trouble = self.lock();
        if let Some(ended) = trouble.take() {
            tracing::warn!(since = %ended.since, error = %ended.error, "storage takes writes again");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Trouble>> {
        self.trouble.lock().unwrap_or_else(|p| p.into_inner())
    }
}
