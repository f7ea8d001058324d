//! What every core function needs: the database, the PSP connector, the
//! settings, and in-process locks. Built once by `startup`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::config::Settings;
use crate::db::Db;
use crate::psp::PspClient;

#[derive(Clone)]
pub struct Ctx {
    pub db: Db,
    /// This process among the tills sharing the database (random per start).
    pub process_id: String,
    pub psp: PspClient,
    pub settings: Arc<Settings>,
    pub checkout_locks: KeyedLocks,
    /// Wakes the queue's workers when a job is enqueued in this process.
    pub queue_wake: Arc<tokio::sync::Notify>,
    /// The HTTP client of merchant webhook deliveries: it reaches public
    /// addresses only, unless `webhooks.allow_private_urls`.
    pub webhook_http: reqwest::Client,
    /// The HTTP client of `alerts.webhook_url`, which the operator sets.
    pub alert_http: reqwest::Client,
    /// API keys recently seen valid, so a request costs no database read.
    pub api_keys: Arc<crate::api_keys::KeyCache>,
}

/// One async mutex per key (a checkout id), so that concurrent identical
/// requests wait for the first instead of racing it to the PSP. Entries
/// disappear when nobody holds or waits for them.
#[derive(Clone, Default)]
pub struct KeyedLocks {
    inner: Arc<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let mutex = {
            let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 1024 {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(key).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.to_string(), Arc::downgrade(&m));
                    m
                }
            }
        };
        mutex.lock_owned().await
    }
}
