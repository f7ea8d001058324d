//! One scheduler among the till processes sharing a database: scheduled
//! jobs run only in the process holding the lease (`scheduler_lease`), which
//! it renews while it lives; another process takes the lease over once it
//! has lapsed ([`LEASE_MS`]). Each run is recorded (`scheduled_runs`), so
//! an operator (and a test) sees which process ran what, and when.

use crate::db::{Tx, now_ms, params};

/// How long a lease lasts unrenewed: a dead scheduler's ticks are skipped
/// for at most this long before another process runs them.
pub const LEASE_MS: i64 = 90_000;
/// How long run records are kept.
pub const KEEP_RUNS_DAYS: i64 = 7;

/// Takes or renews the lease for `holder`; false if another process holds
/// it and it has not lapsed.
pub fn acquire(tx: &Tx, holder: &str) -> anyhow::Result<bool> {
    let now = now_ms();
    let held = tx.query_opt(
        "INSERT INTO scheduler_lease (name, holder, until_ms) VALUES ('scheduler', $1, $2)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
         WHERE scheduler_lease.holder = excluded.holder OR scheduler_lease.until_ms < $3
         RETURNING holder",
        params![holder, now + LEASE_MS, now],
        |r| r.get::<String>(0),
    )?;
    Ok(held.is_some())
}

/// Records that this second's tick of `job` starts in `holder`; returns the
/// run's id, or None if the tick has run already.
pub fn start_run(tx: &Tx, job: &str, holder: &str) -> anyhow::Result<Option<i64>> {
    let now = crate::db::now();
    tx.query_opt(
        "INSERT INTO scheduled_runs (job, tick, holder, started_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (job, tick) DO NOTHING RETURNING id",
        params![job, &now[..19], holder, now],
        |r| r.get(0),
    )
}

pub fn finish_run(tx: &Tx, id: i64, outcome: &str) -> anyhow::Result<()> {
    let outcome: String = outcome.chars().take(500).collect();
    tx.execute(
        "UPDATE scheduled_runs SET finished_at = $2, outcome = $3 WHERE id = $1",
        params![id, crate::db::now(), outcome],
    )?;
    Ok(())
}

/// Deletes run records older than [`KEEP_RUNS_DAYS`]; returns how many.
pub fn cleanup(tx: &Tx) -> anyhow::Result<usize> {
    let cutoff = (chrono::Utc::now() - chrono::Duration::days(KEEP_RUNS_DAYS))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tx.execute("DELETE FROM scheduled_runs WHERE started_at < $1", params![cutoff])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_until_its_lease_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("l.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        assert!(db.write(|tx| acquire(tx, "a")).await.unwrap());
        assert!(db.write(|tx| acquire(tx, "a")).await.unwrap(), "the holder renews");
        assert!(!db.write(|tx| acquire(tx, "b")).await.unwrap(), "another waits");
        db.write(|tx| tx.execute("UPDATE scheduler_lease SET until_ms = 0", params![])).await.unwrap();
        assert!(db.write(|tx| acquire(tx, "b")).await.unwrap(), "a lapsed lease is taken over");
        assert!(!db.write(|tx| acquire(tx, "a")).await.unwrap());
    }
}
