//! Merchant API keys: random, shown once, stored only as a SHA-256 hash
//! (a 190-bit random key needs no slow hash: it cannot be guessed). This
//! module owns `api_keys`.

use anyhow::Context;
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

use crate::db::{Tx, params};

pub const PREFIX: &str = "till_sk_";
const RANDOM_LEN: usize = 32;
/// Longest header value looked at; anything longer is not one of our keys.
const MAX_KEY_LEN: usize = 128;

pub struct CreatedKey {
    pub id: String,
    pub name: String,
    /// The key itself: printed once, never stored.
    pub key: String,
}

pub fn create(tx: &Tx, name: &str) -> anyhow::Result<CreatedKey> {
    let name = name.trim();
    anyhow::ensure!(!name.is_empty() && name.len() <= 100, "the key's name must be 1 to 100 characters");
    let random: String = rand::rng().sample_iter(&Alphanumeric).take(RANDOM_LEN).map(char::from).collect();
    let key = format!("{PREFIX}{random}");
    let id = format!("key_{}", uuid::Uuid::new_v4().simple());
    tx.execute(
        "INSERT INTO api_keys (id, name, key_hash, key_prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
        params![id, name, hash(&key), &key[..PREFIX.len() + 4], crate::db::now()],
    )
    .context("storing the API key")?;
    Ok(CreatedKey { id, name: name.to_string(), key })
}

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: String,
    /// To the minute: see [`touch`].
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

pub fn list(tx: &Tx) -> anyhow::Result<Vec<KeyRow>> {
    tx.query_map(
        "SELECT id, name, key_prefix, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at",
        params![],
        |r| {
            Ok(KeyRow {
                id: r.get(0)?,
                name: r.get(1)?,
                prefix: r.get(2)?,
                created_at: r.get(3)?,
                last_used_at: r.get(4)?,
                revoked_at: r.get(5)?,
            })
        },
    )
}

/// How stale a key's `last_used_at` may be: it is written at most once
/// per this many seconds per key, so a busy shop's API costs one small
/// write per key and minute, not one per request.
pub const LAST_USED_EVERY_S: i64 = 60;

/// Records that key `id` was used now, unless it was within
/// [`LAST_USED_EVERY_S`] already. Returns whether the row changed.
pub fn touch(tx: &Tx, id: &str) -> anyhow::Result<bool> {
    let now = chrono::Utc::now();
    let stale = now - chrono::Duration::seconds(LAST_USED_EVERY_S);
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let n = tx.execute(
        "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
        params![id, fmt(now), fmt(stale)],
    )?;
    Ok(n == 1)
}

/// Revokes a live key; returns false if there is none with this id.
pub fn revoke(tx: &Tx, id: &str) -> anyhow::Result<bool> {
    let n = tx.execute(
        "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        params![id, crate::db::now()],
    )?;
    Ok(n == 1)
}

/// Keys recently found valid: hash → (key id, valid until). A key is looked
/// up in the database at most every [`KeyCache::TTL`], so a revoked key
/// (revoked_at set in the database, by this process or `till api-key
/// revoke` in another) stops working within that time: one indexed read
/// per key and second is all a busy shop's API costs.
#[derive(Default)]
pub struct KeyCache {
    known: std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
    /// When this process last recorded each key's use (by id).
    touched: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl KeyCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(1);
    const MAX_ENTRIES: usize = 4_096;

    pub fn get(&self, key: &str) -> Option<String> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(&hash(key)).filter(|(_, until)| *until > std::time::Instant::now()).map(|(id, _)| id.clone())
    }

    pub fn put(&self, key: &str, id: &str) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= Self::MAX_ENTRIES {
            known.clear();
        }
        known.insert(hash(key), (id.to_string(), std::time::Instant::now() + Self::TTL));
    }

    /// Whether key `id`'s use should be recorded now: true at most once
    /// per [`LAST_USED_EVERY_S`] per key in this process.
    pub fn due_for_touch(&self, id: &str) -> bool {
        let every = std::time::Duration::from_secs(LAST_USED_EVERY_S as u64);
        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if touched.get(id).is_some_and(|at| now.duration_since(*at) < every) {
            return false;
        }
        if touched.len() >= Self::MAX_ENTRIES {
            touched.clear();
        }
        touched.insert(id.to_string(), now);
        true
    }
}

/// The id of the live key `key` is, if any.
pub fn authenticate(tx: &Tx, key: &str) -> anyhow::Result<Option<String>> {
    if key.len() > MAX_KEY_LEN || !key.starts_with(PREFIX) {
        return Ok(None);
    }
    tx.query_opt("SELECT id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", params![hash(key)], |r| r.get(0))
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}
