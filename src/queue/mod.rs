//! The durable job queue in the database; this module owns `jobs`. Jobs are enqueued inside the caller's
//! transaction (outbox), claimed with a lease (a crash never loses or
//! doubles one: an expired lease hands it to another worker, and every job
//! is idempotent), retried with exponential backoff and full jitter, and
//! dead-lettered with an alert after `max_attempts`.

use anyhow::Context;
use rand::Rng;

use crate::config::QueueSettings;
use crate::db::{Tx, now_ms, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Charge one token payment order at the PSP.
    ChargeOrder,
    /// Ask the PSP how a hosted checkout ended (its webhook may be lost).
    SyncCheckout,
    /// Deliver one merchant webhook (subject: the delivery id).
    DeliverWebhook,
    /// Send a refund to the PSP, or ask how it ended.
    SubmitRefund,
    /// Send a payout to the PSP as a transfer, or ask how it ended.
    SendPayout,
    /// Carry out a manual checkout's capture, void or expiry at the PSP (subject: the checkout).
    SettleAuthorization,
    /// Watch a manual checkout's authorization: an alert a day before it
    /// expires, the expiry at its deadline (subject: the checkout).
    AuthorizationDeadline,
    /// Send the shop's answer to a dispute (its evidence, or its acceptance; subject: the PSP's dispute).
    SendDisputeResponse,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::ChargeOrder => "charge_order",
            JobKind::SyncCheckout => "sync_checkout",
            JobKind::DeliverWebhook => "deliver_webhook",
            JobKind::SubmitRefund => "submit_refund",
            JobKind::SendPayout => "send_payout",
            JobKind::SettleAuthorization => "settle_authorization",
            JobKind::AuthorizationDeadline => "authorization_deadline",
            JobKind::SendDisputeResponse => "send_dispute_response",
        }
    }

    pub const ALL: [JobKind; 8] = [
        JobKind::ChargeOrder,
        JobKind::SyncCheckout,
        JobKind::DeliverWebhook,
        JobKind::SubmitRefund,
        JobKind::SendPayout,
        JobKind::SettleAuthorization,
        JobKind::AuthorizationDeadline,
        JobKind::SendDisputeResponse,
    ];

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub subject_id: String,
    pub payload: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub lease_token: String,
}

/// Why a job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again later (timeouts, 5xx, 429, connection errors, unknown outcomes).
    #[error("{0}")]
    Retry(String),
    /// Retrying cannot help: dead-letter it now for a person.
    #[error("{0}")]
    Final(String),
    /// Nothing failed, it is just not over: run again at `at_ms` (unix ms),
    /// without spending an attempt.
    #[error("{why}")]
    Later { at_ms: i64, why: String },
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Retry(format!("{e:#}"))
    }
}

/// Enqueues a job unless one for the same kind and subject is already live.
/// Returns whether a job was added.
pub fn enqueue(tx: &Tx, kind: JobKind, subject_id: &str, delay_ms: i64, max_attempts: u32) -> anyhow::Result<bool> {
    let now = crate::db::now();
    let added = tx
        .execute(
            "INSERT INTO jobs (kind, subject_id, status, max_attempts, run_at_ms, created_at, updated_at)
             VALUES ($1, $2, 'queued', $3, $4, $5, $5) ON CONFLICT DO NOTHING",
            params![kind.as_str(), subject_id, max_attempts, now_ms() + delay_ms.max(0), now],
        )
        .with_context(|| format!("enqueueing {} for {subject_id}", kind.as_str()))?;
    Ok(added == 1)
}

/// Makes a job for this kind and subject due now: an existing queued one
/// is brought forward, otherwise one is enqueued (unless one is running).
/// Returns whether anything changed.
pub fn enqueue_now(tx: &Tx, kind: JobKind, subject_id: &str, max_attempts: u32) -> anyhow::Result<bool> {
    let moved = tx.execute(
        "UPDATE jobs SET run_at_ms = $3, updated_at = $4
         WHERE kind = $1 AND subject_id = $2 AND status = 'queued' AND run_at_ms > $3",
        params![kind.as_str(), subject_id, now_ms(), crate::db::now()],
    )?;
    if moved > 0 {
        return Ok(true);
    }
    enqueue(tx, kind, subject_id, 0, max_attempts)
}

/// Whether a worker is running the job of this kind and subject now.
pub fn is_running(tx: &Tx, kind: JobKind, subject_id: &str) -> anyhow::Result<bool> {
    let n: i64 = tx.query_value(
        "SELECT COUNT(*) FROM jobs WHERE kind = $1 AND subject_id = $2 AND status = 'running'",
        params![kind.as_str(), subject_id],
    )?;
    Ok(n > 0)
}

/// Claims up to `limit` due jobs (queued and due, or running with an expired
/// lease) for `lease_ms`, counting the attempt now so that a job that
/// crashes its worker still reaches the dead-letter queue. One statement,
/// so that no other worker claims the same jobs in between; on PostgreSQL
/// its inner SELECT locks the rows it takes and skips those another claim
/// holds (`Tx::skip_locked`), so till processes sharing the database never
/// claim the same job (run it with [`crate::db::Isolation::ReadCommitted`]).
pub fn claim(tx: &Tx, limit: u32, lease_ms: u64) -> anyhow::Result<Vec<Job>> {
    let now = now_ms();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let sql = format!(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_token = $1,
                         lease_until_ms = $2, updated_at = $3
         WHERE id IN (SELECT id FROM jobs
                      WHERE (status = 'queued' AND run_at_ms <= $4)
                         OR (status = 'running' AND lease_until_ms <= $4)
                      ORDER BY run_at_ms LIMIT $5 {})
         RETURNING id, kind, subject_id, payload, attempts, max_attempts",
        tx.skip_locked()
    );
    tx.query_map(&sql, params![token, now + lease_ms as i64, crate::db::now(), now, limit], |r| {
        Ok(Job {
            id: r.get(0)?,
            kind: r.get(1)?,
            subject_id: r.get(2)?,
            payload: r.get(3)?,
            attempts: r.get(4)?,
            max_attempts: r.get(5)?,
            lease_token: token.clone(),
        })
    })
}

/// Marks a job done, if this worker still holds its lease.
pub fn complete(tx: &Tx, job: &Job) -> anyhow::Result<bool> {
    let n = tx.execute(
        "UPDATE jobs SET status = 'done', lease_token = NULL, lease_until_ms = NULL, last_error = NULL,
                         updated_at = $3
         WHERE id = $1 AND lease_token = $2 AND status = 'running'",
        params![job.id, job.lease_token, crate::db::now()],
    )?;
    Ok(n == 1)
}

/// Puts a job that is not over back in the queue for `at_ms`, giving back
/// the attempt its claim counted: waiting is not failing. Returns false if
/// another worker holds it now.
pub fn later(tx: &Tx, job: &Job, at_ms: i64, note: &str) -> anyhow::Result<bool> {
    let n = tx.execute(
        "UPDATE jobs SET status = 'queued', run_at_ms = $3,
                         attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
                         lease_token = NULL, lease_until_ms = NULL, last_error = $4, updated_at = $5
         WHERE id = $1 AND lease_token = $2 AND status = 'running'",
        params![job.id, job.lease_token, at_ms, note, crate::db::now()],
    )?;
    Ok(n == 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    RetryAt(i64),
    Dead,
    /// Another worker holds the job now; nothing was written.
    LeaseLost,
}

/// Records a failed attempt: back to the queue after a backoff, or, when the
/// attempts are spent or the error is final, to the dead-letter queue with
/// an alert, in one transaction.
pub fn fail(tx: &Tx, job: &Job, error: &str, retryable: bool, settings: &QueueSettings) -> anyhow::Result<Failed> {
    let error: String = error.chars().take(2_000).collect();
    let dead = !retryable || job.attempts >= job.max_attempts;
    let run_at = now_ms() + backoff_ms(job.attempts, settings) as i64;
    let n = tx.execute(
        "UPDATE jobs SET status = CASE WHEN $3 = 1 THEN 'dead' ELSE 'queued' END, run_at_ms = $4,
                         lease_token = NULL, lease_until_ms = NULL, last_error = $5, updated_at = $6
         WHERE id = $1 AND lease_token = $2 AND status = 'running'",
        params![job.id, job.lease_token, dead, run_at, error, crate::db::now()],
    )?;
    if n == 0 {
        return Ok(Failed::LeaseLost);
    }
    if !dead {
        return Ok(Failed::RetryAt(run_at));
    }
    let message = format!(
        "job {} ({} for {}) is dead after {} attempt(s): {error}",
        job.id, job.kind, job.subject_id, job.attempts
    );
    crate::alerts::raise(tx, DEAD_LETTER, &dead_letter_subject(job.id), &message)?;
    tracing::error!(job = job.id, kind = %job.kind, subject = %job.subject_id, %error, "job dead-lettered");
    Ok(Failed::Dead)
}

/// The kind of the alert a dead letter raises, and its subject.
const DEAD_LETTER: &str = "dead_letter";

fn dead_letter_subject(job_id: i64) -> String {
    format!("job:{job_id}")
}

/// Full jitter: a uniform wait in [0, min(cap, base × 2^(attempt-1))].
pub fn backoff_ms(attempt: u32, settings: &QueueSettings) -> u64 {
    let exp = settings.backoff_base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
    let ceiling = exp.min(settings.backoff_cap_ms);
    rand::rng().random_range(0..=ceiling)
}

/// Puts a dead job back in the queue with fresh attempts, and resolves its
/// alert, inside the caller's write.
pub fn retry_dead(tx: &Tx, job_id: i64, by: &str) -> anyhow::Result<bool> {
    let n = tx.execute(
        "UPDATE jobs SET status = 'queued', attempts = 0, run_at_ms = $2, updated_at = $3,
                         discarded_at = NULL, discarded_by = NULL
         WHERE id = $1 AND status = 'dead'",
        params![job_id, now_ms(), crate::db::now()],
    )?;
    if n == 1 {
        crate::alerts::resolve(tx, DEAD_LETTER, &dead_letter_subject(job_id), &format!("retried by {by}"))?;
    }
    Ok(n == 1)
}

/// Sets a dead job aside: it stays dead (it never runs), leaves the dead
/// letters that need a person, and its alert is resolved with the note.
/// `retry_dead` can still revive it. Returns whether it was a dead letter.
pub fn discard_dead(tx: &Tx, job_id: i64, by: &str, note: &str) -> anyhow::Result<bool> {
    let n = tx.execute(
        "UPDATE jobs SET discarded_at = $2, discarded_by = $3, updated_at = $2
         WHERE id = $1 AND status = 'dead' AND discarded_at IS NULL",
        params![job_id, crate::db::now(), by],
    )?;
    if n == 1 {
        let resolution = format!("discarded by {by}: {note}");
        crate::alerts::resolve(tx, DEAD_LETTER, &dead_letter_subject(job_id), &resolution)?;
    }
    Ok(n == 1)
}

/// Jobs waiting or running, by kind and status (`queued`, `running`), and
/// dead letters not discarded (`dead`): what the metrics show of the queue.
pub fn depth(tx: &Tx) -> anyhow::Result<Vec<(String, String, i64)>> {
    tx.query_map(
        "SELECT kind, status, COUNT(*) FROM jobs
         WHERE status IN ('queued', 'running') OR (status = 'dead' AND discarded_at IS NULL)
         GROUP BY kind, status",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// When the queued job of this kind and subject runs next (unix ms), if one is queued.
pub fn next_run_ms(tx: &Tx, kind: JobKind, subject_id: &str) -> anyhow::Result<Option<i64>> {
    tx.query_opt(
        "SELECT run_at_ms FROM jobs WHERE kind = $1 AND subject_id = $2 AND status = 'queued'",
        params![kind.as_str(), subject_id],
        |r| r.get(0),
    )
}

/// A job's status, attempts and last error.
pub fn status_of(tx: &Tx, job_id: i64) -> anyhow::Result<Option<(String, u32, Option<String>)>> {
    tx.query_opt("SELECT status, attempts, last_error FROM jobs WHERE id = $1", params![job_id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn settings() -> QueueSettings {
        QueueSettings { backoff_base_ms: 100, backoff_cap_ms: 1_000, ..QueueSettings::default() }
    }

    #[test]
    fn every_kind_parses_back() {
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = settings();
        for _ in 0..200 {
            assert!(backoff_ms(1, &s) <= 100);
            assert!(backoff_ms(3, &s) <= 400);
            assert!(backoff_ms(30, &s) <= 1_000);
            assert!(backoff_ms(u32::MAX, &s) <= 1_000);
        }
        assert!((0..200).any(|_| backoff_ms(30, &s) > 500), "jitter spreads over the whole window");
    }

    fn db() -> (tempfile::TempDir, crate::db::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("q.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        (dir, db)
    }

    fn claim_now(db: &Db, limit: u32, lease_ms: u64) -> anyhow::Result<Vec<Job>> {
        db.write_now(|tx| claim(tx, limit, lease_ms))
    }

    fn complete_now(db: &Db, job: &Job) -> anyhow::Result<bool> {
        db.write_now(|tx| complete(tx, job))
    }

    fn fail_now(db: &Db, job: &Job, e: &str, retry: bool, s: &QueueSettings) -> anyhow::Result<Failed> {
        db.write_now(|tx| fail(tx, job, e, retry, s))
    }

    fn enqueue_one(db: &Db, subject: &str, max_attempts: u32) -> bool {
        db.write_now(|tx| enqueue(tx, JobKind::ChargeOrder, subject, 0, max_attempts)).unwrap()
    }

    fn open_alerts(db: &Db) -> i64 {
        db.read_now(crate::alerts::open_count).unwrap()
    }

    #[test]
    fn a_live_job_is_enqueued_once_and_claimed_once() {
        let (_dir, db) = db();
        assert!(enqueue_one(&db, "o1", 3));
        assert!(!enqueue_one(&db, "o1", 3), "same kind and subject while live");
        let jobs = claim_now(&db, 10, 60_000).unwrap();
        assert_eq!(jobs.len(), 1);
        assert!(claim_now(&db, 10, 60_000).unwrap().is_empty(), "leased");
        assert!(complete_now(&db, &jobs[0]).unwrap());
        assert!(enqueue_one(&db, "o1", 3), "a new job once the old one is done");
    }

    #[test]
    fn an_expired_lease_hands_the_job_over_and_the_old_holder_cannot_finish_it() {
        let (_dir, db) = db();
        enqueue_one(&db, "o1", 3);
        let first = claim_now(&db, 10, 0).unwrap().remove(0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = claim_now(&db, 10, 60_000).unwrap().remove(0);
        assert_eq!((second.id, second.attempts), (first.id, 2));
        assert!(!complete_now(&db, &first).unwrap());
        assert_eq!(fail_now(&db, &first, "late", true, &settings()).unwrap(), Failed::LeaseLost);
        assert!(complete_now(&db, &second).unwrap());
    }

    #[test]
    fn spent_attempts_dead_letter_with_an_alert_and_retry_revives() {
        let (_dir, db) = db();
        let s = QueueSettings { backoff_base_ms: 1, backoff_cap_ms: 1, ..QueueSettings::default() };
        enqueue_one(&db, "o1", 2);
        let job = claim_now(&db, 1, 60_000).unwrap().remove(0);
        assert!(matches!(fail_now(&db, &job, "boom", true, &s).unwrap(), Failed::RetryAt(_)));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let job = claim_now(&db, 1, 60_000).unwrap().remove(0);
        assert_eq!(fail_now(&db, &job, "boom again", true, &s).unwrap(), Failed::Dead);
        let (status, attempts, error) = db.read_now(|tx| status_of(tx, job.id)).unwrap().unwrap();
        assert_eq!((status.as_str(), attempts, error.as_deref()), ("dead", 2, Some("boom again")));
        assert_eq!(open_alerts(&db), 1);
        assert!(db.write_now(|tx| retry_dead(tx, job.id, "staff@example.com")).unwrap());
        assert_eq!(open_alerts(&db), 0);
        assert_eq!(claim_now(&db, 1, 60_000).unwrap().len(), 1);
    }

    #[test]
    fn a_discarded_dead_letter_stays_dead_and_its_alert_is_resolved() {
        let (_dir, db) = db();
        enqueue_one(&db, "o1", 10);
        let job = claim_now(&db, 1, 60_000).unwrap().remove(0);
        assert_eq!(fail_now(&db, &job, "bad request", false, &settings()).unwrap(), Failed::Dead);
        assert!(db.write_now(|tx| discard_dead(tx, job.id, "staff@example.com", "the shop is gone")).unwrap());
        assert!(!db.write_now(|tx| discard_dead(tx, job.id, "staff@example.com", "twice")).unwrap(), "once");
        assert_eq!(db.read_now(|tx| status_of(tx, job.id)).unwrap().unwrap().0, "dead");
        assert_eq!(open_alerts(&db), 0);
        assert!(claim_now(&db, 1, 60_000).unwrap().is_empty(), "a discarded job never runs");
        assert!(db.write_now(|tx| retry_dead(tx, job.id, "staff@example.com")).unwrap(), "it can still be revived");
        let discarded: Option<String> =
            db.read_now(|tx| tx.query_value("SELECT discarded_at FROM jobs WHERE id = $1", params![job.id])).unwrap();
        assert!(discarded.is_none());
    }

    #[test]
    fn a_job_that_waits_gets_its_attempt_back_and_never_below_zero() {
        let (_dir, db) = db();
        enqueue_one(&db, "o1", 3);
        let job = claim_now(&db, 1, 60_000).unwrap().remove(0);
        assert!(db.write_now(|tx| later(tx, &job, now_ms(), "not over")).unwrap());
        assert_eq!(db.read_now(|tx| status_of(tx, job.id)).unwrap().unwrap().1, 0);
        let job = claim_now(&db, 1, 60_000).unwrap().remove(0);
        db.write_now(|tx| tx.execute("UPDATE jobs SET attempts = 0 WHERE id = $1", params![job.id])).unwrap();
        assert!(db.write_now(|tx| later(tx, &job, now_ms(), "still not over")).unwrap());
        assert_eq!(
            db.read_now(|tx| status_of(tx, job.id)).unwrap().unwrap(),
            ("queued".into(), 0, Some("still not over".into()))
        );
    }

    #[test]
    fn a_final_error_dead_letters_at_once() {
        let (_dir, db) = db();
        enqueue_one(&db, "o1", 10);
        let job = claim_now(&db, 1, 60_000).unwrap().remove(0);
        assert_eq!(fail_now(&db, &job, "bad request", false, &settings()).unwrap(), Failed::Dead);
    }
}
