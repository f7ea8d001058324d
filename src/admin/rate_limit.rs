//! The login rate limit, kept in the database (`login_attempts`) so that
//! every till process on it enforces the same limits. An attempt counts in
//! two buckets: its account from its client address (`acct_ip:`), which
//! stops guessing one account's password without locking that account out
//! for everyone else, and its client address across all accounts (`ip:`),
//! which stops one address from spraying many accounts.
//!
//! An attempt is reserved before its password is verified, in one write
//! that counts the buckets and inserts only if each is under its limit:
//! the writer runs one write at a time, so concurrent attempts cannot all
//! pass the check before any of them is counted. The reservation then
//! becomes a failure (it keeps counting), or is removed (a success, or an
//! attempt that was never verified). A reservation left pending by a crash
//! counts until its window ends, like a failure.
//!
//! Rows older than the window count for nothing; each reservation deletes a
//! batch of them. Rows are only added by reservations, which end in an
//! argon2 verification (bounded per process), so the table stays bounded.

use std::net::IpAddr;

use crate::admin::users::StaffEmail;
use crate::config::AdminSettings;
use crate::db::{Tx, params};

/// Expired rows deleted per reservation: more than a reservation adds.
const PRUNE_BATCH: i64 = 100;
/// How many times `admin.login_attempts` one address may fail across all
/// accounts: room for an office behind one address, none for a spray.
pub const ADDRESS_FACTOR: u32 = 5;

/// How many attempts each bucket allows within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_account_and_address: u32,
    pub per_address: u32,
    pub window_ms: i64,
}

impl Limits {
    pub fn from_settings(admin: &AdminSettings) -> Limits {
        Limits {
            per_account_and_address: admin.login_attempts,
            per_address: admin.login_attempts.saturating_mul(ADDRESS_FACTOR),
            window_ms: i64::try_from(admin.login_window_seconds).unwrap_or(i64::MAX / 1000).saturating_mul(1000),
        }
    }
}

/// Where one attempt counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    account_and_address: String,
    address: String,
}

impl Buckets {
    /// An email that does not parse shares one account bucket per address;
    /// an unknown address (no peer) shares one address bucket.
    pub fn new(email: Option<&StaffEmail>, address: Option<IpAddr>) -> Buckets {
        let address = address.map_or_else(|| "unknown".to_string(), address_key);
        let email = email.map_or("", StaffEmail::as_str);
        Buckets { account_and_address: format!("acct_ip:{email}|{address}"), address: format!("ip:{address}") }
    }
}

/// An IPv4 address as it is; an IPv6 address by its /64, the block one
/// subscriber (or one attacker) gets.
fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// An attempt counted in its buckets until it is settled.
#[derive(Debug)]
pub struct Reservation {
    attempt_id: String,
    account_and_address: String,
}

/// The answer to a reservation.
#[derive(Debug)]
pub enum Admission {
    Reserved(Reservation),
    /// A bucket is full; the oldest attempt in it leaves the window in this long.
    Limited {
        retry_after_ms: i64,
    },
}

/// Reserves an attempt in both buckets if each is under its limit. Run it
/// inside one write transaction: the count and the insert must be atomic.
pub fn reserve(tx: &Tx, buckets: &Buckets, limits: &Limits, now_ms: i64) -> anyhow::Result<Admission> {
    let window_start_ms = now_ms.saturating_sub(limits.window_ms);
    prune(tx, window_start_ms)?;
    let checks =
        [(&buckets.account_and_address, limits.per_account_and_address), (&buckets.address, limits.per_address)];
    let mut retry_after_ms = None;
    for (bucket, limit) in checks {
        let (count, oldest_ms): (i64, Option<i64>) = tx.query_row(
            "SELECT COUNT(*), MIN(at_ms) FROM login_attempts WHERE bucket = $1 AND at_ms > $2",
            params![bucket, window_start_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if count >= i64::from(limit) {
            let wait_ms = oldest_ms.unwrap_or(now_ms) + limits.window_ms - now_ms;
            retry_after_ms = Some(retry_after_ms.unwrap_or(0).max(wait_ms.max(1)));
        }
    }
    if let Some(retry_after_ms) = retry_after_ms {
        return Ok(Admission::Limited { retry_after_ms });
    }
    let attempt_id = uuid::Uuid::new_v4().simple().to_string();
    for bucket in [&buckets.account_and_address, &buckets.address] {
        tx.execute(
            "INSERT INTO login_attempts (attempt_id, bucket, state, at_ms) VALUES ($1, $2, 'pending', $3)",
            params![attempt_id, bucket, now_ms],
        )?;
    }
    Ok(Admission::Reserved(Reservation { attempt_id, account_and_address: buckets.account_and_address.clone() }))
}

fn prune(tx: &Tx, window_start_ms: i64) -> anyhow::Result<()> {
    tx.execute(
        "DELETE FROM login_attempts WHERE (attempt_id, bucket) IN
             (SELECT attempt_id, bucket FROM login_attempts WHERE at_ms <= $1 LIMIT $2)",
        params![window_start_ms, PRUNE_BATCH],
    )?;
    Ok(())
}

/// A wrong password: the attempt keeps counting until its window ends.
pub fn fail(tx: &Tx, reservation: &Reservation) -> anyhow::Result<()> {
    tx.execute("UPDATE login_attempts SET state = 'failed' WHERE attempt_id = $1", params![reservation.attempt_id])?;
    Ok(())
}

/// The right password: the attempt no longer counts, nor do the earlier
/// failures of its account from its address (those of the address across
/// other accounts still do).
pub fn succeed(tx: &Tx, reservation: &Reservation) -> anyhow::Result<()> {
    release(tx, reservation)?;
    tx.execute(
        "DELETE FROM login_attempts WHERE bucket = $1 AND state = 'failed'",
        params![reservation.account_and_address],
    )?;
    Ok(())
}

/// An attempt that was never verified (the server was busy, or failed):
/// it counts for nothing.
pub fn release(tx: &Tx, reservation: &Reservation) -> anyhow::Result<()> {
    tx.execute("DELETE FROM login_attempts WHERE attempt_id = $1", params![reservation.attempt_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    const WINDOW_MS: i64 = 60_000;
    const LIMITS: Limits = Limits { per_account_and_address: 3, per_address: 6, window_ms: WINDOW_MS };

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("l.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        (dir, db)
    }

    fn buckets(email: &str, ip: &str) -> Buckets {
        Buckets::new(StaffEmail::parse(email).as_ref(), Some(ip.parse().unwrap()))
    }

    fn reserve_at(db: &Db, b: &Buckets, now_ms: i64) -> Option<Reservation> {
        match db.write_now(|tx| reserve(tx, b, &LIMITS, now_ms)).unwrap() {
            Admission::Reserved(r) => Some(r),
            Admission::Limited { retry_after_ms } => {
                assert!((1..=WINDOW_MS).contains(&retry_after_ms), "{retry_after_ms}");
                None
            }
        }
    }

    fn rows(db: &Db) -> i64 {
        db.read_now(|tx| tx.query_value("SELECT COUNT(*) FROM login_attempts", params![])).unwrap()
    }

    /// Settles a reservation (`fail`, `succeed` or `release`) in a write of its own.
    fn settle(db: &Db, how: fn(&Tx, &Reservation) -> anyhow::Result<()>, r: &Reservation) {
        db.write_now(|tx| how(tx, r)).unwrap();
    }

    #[test]
    fn an_account_is_limited_from_one_address_only() {
        let (_dir, db) = db();
        let here = buckets("kim@example.com", "203.0.113.7");
        for _ in 0..3 {
            settle(&db, fail, &reserve_at(&db, &here, 1_000).unwrap());
        }
        assert!(reserve_at(&db, &here, 1_000).is_none(), "the fourth failure from here is refused");
        assert!(reserve_at(&db, &buckets("KIM@example.com", "203.0.113.7"), 1_000).is_none(), "emails are one");
        assert!(reserve_at(&db, &buckets("kim@example.com", "198.51.100.9"), 1_000).is_some(), "not elsewhere");
        assert!(reserve_at(&db, &buckets("lee@example.com", "203.0.113.7"), 1_000).is_some(), "nor other accounts");
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let (_dir, db) = db();
        for i in 0..6 {
            let r = reserve_at(&db, &buckets(&format!("u{i}@example.com"), "203.0.113.7"), 1_000).unwrap();
            settle(&db, fail, &r);
        }
        assert!(reserve_at(&db, &buckets("new@example.com", "203.0.113.7"), 1_000).is_none());
        assert!(reserve_at(&db, &buckets("new@example.com", "198.51.100.9"), 1_000).is_some());
    }

    #[test]
    fn pending_reservations_count_and_released_ones_do_not() {
        let (_dir, db) = db();
        let here = buckets("kim@example.com", "203.0.113.7");
        let pending: Vec<_> = (0..3).map(|_| reserve_at(&db, &here, 1_000).unwrap()).collect();
        assert!(reserve_at(&db, &here, 1_000).is_none(), "three in flight fill the bucket");
        settle(&db, release, &pending[0]);
        assert!(reserve_at(&db, &here, 1_000).is_some(), "a released attempt counts for nothing");
    }

    #[test]
    fn a_success_clears_its_accounts_failures_from_its_address() {
        let (_dir, db) = db();
        let here = buckets("kim@example.com", "203.0.113.7");
        let other_account = buckets("lee@example.com", "203.0.113.7");
        settle(&db, fail, &reserve_at(&db, &other_account, 1_000).unwrap());
        for _ in 0..2 {
            settle(&db, fail, &reserve_at(&db, &here, 1_000).unwrap());
        }
        settle(&db, succeed, &reserve_at(&db, &here, 1_000).unwrap());
        // Three more, which the two before the success would have prevented.
        for _ in 0..3 {
            settle(&db, fail, &reserve_at(&db, &here, 1_000).unwrap());
        }
        assert!(reserve_at(&db, &here, 1_000).is_none());
        // The address's bucket kept every failure, the other account's too:
        // six, its limit.
        assert!(reserve_at(&db, &buckets("new@example.com", "203.0.113.7"), 1_000).is_none());
    }

    #[test]
    fn a_window_ends_and_old_rows_are_pruned() {
        let (_dir, db) = db();
        let here = buckets("kim@example.com", "203.0.113.7");
        for _ in 0..3 {
            settle(&db, fail, &reserve_at(&db, &here, 1_000).unwrap());
        }
        let Admission::Limited { retry_after_ms } = db.write_now(|tx| reserve(tx, &here, &LIMITS, 31_000)).unwrap()
        else {
            panic!("still limited")
        };
        assert_eq!(retry_after_ms, 30_000, "until the oldest failure leaves the window");
        assert!(reserve_at(&db, &here, 1_000 + WINDOW_MS).is_some(), "the window has ended");
        assert_eq!(rows(&db), 2, "the expired failures are gone; the new attempt's two rows remain");
    }

    #[test]
    fn the_table_stays_bounded_under_a_spray_of_addresses() {
        let (_dir, db) = db();
        for i in 0..1_000_i64 {
            let ip = format!("10.0.{}.{}", i / 250, i % 250);
            // Each attempt comes a window after the one 50 before it.
            let now_ms = i * (WINDOW_MS / 50 + 1);
            settle(&db, fail, &reserve_at(&db, &buckets("kim@example.com", &ip), now_ms).unwrap());
        }
        assert!(rows(&db) <= 2 * 51, "{} rows", rows(&db));
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        assert_eq!(buckets("a@b.c", "2001:db8:1:2:aaaa::1"), buckets("a@b.c", "2001:db8:1:2:bbbb::9"));
        assert_ne!(buckets("a@b.c", "2001:db8:1:2::1"), buckets("a@b.c", "2001:db8:1:3::1"));
        assert_eq!(buckets("a@b.c", "::ffff:203.0.113.7"), buckets("a@b.c", "203.0.113.7"));
        assert_eq!(Buckets::new(None, None).address, "ip:unknown");
    }
}
