//! Group commit: one thread owns the database's write connection and runs
//! every `Db::write` closure. Closures that arrive while a commit is under
//! way are run together in the next transaction, each inside its own
//! savepoint, so a failing closure rolls back only its own changes; one
//! `COMMIT` (one fsync under `synchronous=FULL`) then makes the whole batch
//! durable, and only then does each caller get its answer.
//!
//! A large write (thousands of rows: a batch of bookings, a settlement
//! file's lines) asks to run alone, in a transaction of its own: it is a
//! batch by itself, and inside a savepoint every page it touches stays in
//! the in-memory statement journal, which SQLite walks from its start at
//! the end of each statement, so the write would slow down quadratically.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::db::errors::{StorageError, is_sqlite_storage_error};
use crate::db::health::Health;

/// Closures run in one transaction at the most.
pub const MAX_BATCH: usize = 512;
/// Closures waiting for the writer at the most; callers wait beyond that.
pub const QUEUE_DEPTH: usize = 8_192;

/// A closure and where its answer goes, with its type erased.
trait WriteJob: Send {
    /// Whether this write runs in a transaction of its own.
    fn alone(&self) -> bool;
    /// Runs the closure; returns whether it succeeded (its changes are kept).
    fn run(&mut self, tx: &Transaction) -> bool;
    /// Sends the answer: the closure's own, once the batch is durable, or
    /// the commit's failure.
    fn finish(self: Box<Self>, commit: Result<(), Failure>);
}

/// Why a transaction did not commit, told to every write in it.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    /// For want of storage (a full disk, a read-only file, an I/O error).
    storage: bool,
}

impl Failure {
    fn of(what: &str, e: &rusqlite::Error) -> Failure {
        Failure { message: format!("{what}: {e}"), storage: is_sqlite_storage_error(e) }
    }

    fn into_error(self) -> anyhow::Error {
        if self.storage { anyhow::Error::new(StorageError(self.message)) } else { anyhow::anyhow!(self.message) }
    }
}

struct Job<F, T, E> {
    alone: bool,
    f: Option<F>,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> WriteJob for Job<F, T, E>
where
    F: FnOnce(&Transaction) -> Result<T, E> + Send,
    T: Send,
    E: From<anyhow::Error> + Send,
{
    fn alone(&self) -> bool {
        self.alone
    }

    fn run(&mut self, tx: &Transaction) -> bool {
        let Some(f) = self.f.take() else { return false };
        let result = catch_unwind(AssertUnwindSafe(|| f(tx)))
            .unwrap_or_else(|_| Err(E::from(anyhow::anyhow!("a database write panicked"))));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), Failure>) {
        let answer = match (commit, self.result) {
            // A closure that failed was rolled back: its own error is the answer.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Err(e), Some(Ok(_))) => Err(E::from(e.into_error().context("the write was not committed"))),
            (Err(e), None) => {
                Err(E::from(e.into_error().context("the write was not run: the transaction failed first")))
            }
            (Ok(()), None) => Err(E::from(anyhow::anyhow!("the write was not run"))),
        };
        // The caller may have gone away (a dropped request): nothing to tell.
        let _ = self.reply.send(answer);
    }
}

/// The handle callers use; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn WriteJob>>,
}

impl Writer {
    /// Starts the writer thread on its own connection; it tells `health`
    /// how its commits go.
    pub fn spawn(conn: Connection, name: &str, health: Arc<Health>) -> anyhow::Result<Writer> {
        let (jobs, rx) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new().name(format!("{name}-writer")).spawn(move || run(conn, rx, &health))?;
        Ok(Writer { jobs })
    }

    /// Runs `f` in the next group commit, in a savepoint of its own; or, if
    /// `alone`, in a transaction of its own.
    pub async fn write<T, E, F>(&self, alone: bool, f: F) -> Result<T, E>
    where
        F: FnOnce(&Transaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job { alone, f: Some(f), result: None, reply });
        self.jobs.send(job).await.map_err(|_| E::from(anyhow::anyhow!("the database writer has stopped")))?;
        answer.await.map_err(|_| E::from(anyhow::anyhow!("the database writer dropped a write")))?
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Box<dyn WriteJob>>, health: &Health) {
    let mut next = None;
    loop {
        let Some(first) = next.take().or_else(|| rx.blocking_recv()) else { return };
        let changes_before = conn.total_changes();
        if first.alone() {
            let outcome = run_alone(&mut conn, first);
            observe(health, outcome, conn.total_changes() > changes_before);
            continue;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                // It waits for this batch's commit, then runs by itself.
                Ok(job) if job.alone() => {
                    next = Some(job);
                    break;
                }
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = run_batch(&mut conn, batch);
        observe(health, outcome, conn.total_changes() > changes_before);
    }
}

/// What a transaction says of the storage: a failure for want of storage
/// puts it in trouble; a commit that wrote something ends that. (A commit
/// with nothing to write succeeds on a full disk too: it proves nothing.)
fn observe(health: &Health, outcome: Result<(), Failure>, changed: bool) {
    match outcome {
        Err(f) if f.storage => health.failed(&f.message),
        Ok(()) if changed => health.wrote(),
        _ => {}
    }
}

/// One write in its own `BEGIN IMMEDIATE … COMMIT`; a failing write is
/// rolled back whole.
fn run_alone(conn: &mut Connection, mut job: Box<dyn WriteJob>) -> Result<(), Failure> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return finish_all(vec![job], Err(Failure::of("beginning a write transaction", &e))),
    };
    let commit = if job.run(&tx) {
        commit_timed(tx, 1)
    } else {
        // Its own error is its answer; dropping the transaction rolls it back.
        // SQLite may have ended it already, for want of storage among others.
        let ended = tx.is_autocommit();
        drop(tx);
        if ended { Err(ended_early()) } else { Ok(()) }
    };
    // Storage trouble is logged once per episode, by `health`.
    if let Some(e) = commit.as_ref().err().filter(|e| !e.storage) {
        tracing::error!(error = %e.message, "a write failed to commit");
    }
    finish_all(vec![job], commit)
}

/// SQLite ended a transaction by itself: it does on a full disk or an
/// I/O error (SQLITE_FULL, SQLITE_IOERR; SQLITE_NOMEM and SQLITE_BUSY, the
/// others, cannot happen to the writer, which holds the write lock).
fn ended_early() -> Failure {
    Failure {
        message: "the transaction ended early (SQLite rolled it back: disk full or I/O error)".into(),
        storage: true,
    }
}

fn run_batch(conn: &mut Connection, mut batch: Vec<Box<dyn WriteJob>>) -> Result<(), Failure> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return finish_all(batch, Err(Failure::of("beginning a write transaction", &e))),
    };
    for job in &mut batch {
        if let Err(e) = tx.execute_batch("SAVEPOINT job") {
            drop(tx);
            return finish_all(batch, Err(Failure::of("opening a savepoint", &e)));
        }
        let ok = job.run(&tx);
        // SQLite may have ended the transaction itself (a disk error): stop
        // here rather than let the next closures run outside a transaction.
        if tx.is_autocommit() {
            drop(tx);
            return finish_all(batch, Err(ended_early()));
        }
        let closed =
            if ok { tx.execute_batch("RELEASE job") } else { tx.execute_batch("ROLLBACK TO job; RELEASE job") };
        if let Err(e) = closed {
            drop(tx);
            return finish_all(batch, Err(Failure::of("closing a savepoint", &e)));
        }
    }
    let commit = commit_timed(tx, batch.len());
    if let Some(e) = commit.as_ref().err().filter(|e| !e.storage) {
        tracing::error!(error = %e.message, writes = batch.len(), "a group commit failed");
    }
    finish_all(batch, commit)
}

/// Commits `writes` writes, timed for the metrics.
fn commit_timed(tx: Transaction, writes: usize) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    tx.commit().map_err(|e| Failure::of("committing", &e))?;
    crate::metrics::record_commit("sqlite", writes, started.elapsed());
    Ok(())
}

/// Answers every write of a transaction; returns how it ended.
fn finish_all(batch: Vec<Box<dyn WriteJob>>, commit: Result<(), Failure>) -> Result<(), Failure> {
    for job in batch {
        job.finish(commit.clone());
    }
    commit
}

#[cfg(test)]
mod tests {
    use crate::db::Db;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db"), 2, 1000, &crate::db::till_migrations()).unwrap();
        db.conn().unwrap().execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap();
        (dir, db)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_rolls_back_only_its_own_changes_in_a_batch() {
        let (_dir, db) = db().await;
        let writes = (0..200i64).map(|k| {
            let db = db.clone();
            tokio::spawn(async move {
                db.write_sqlite(move |tx| -> anyhow::Result<()> {
                    tx.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])?;
                    // Every tenth write fails after writing: its row must vanish.
                    anyhow::ensure!(k % 10 != 0, "write {k} fails");
                    Ok(())
                })
                .await
            })
        });
        let results = futures_util::future::join_all(writes).await;
        let failed = results.iter().filter(|r| r.as_ref().unwrap().is_err()).count();
        assert_eq!(failed, 20);
        let conn = db.conn().unwrap();
        let (rows, tenths): (i64, i64) =
            conn.query_row("SELECT COUNT(*), SUM(k % 10 = 0) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((rows, tenths), (180, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_alone_commits_or_rolls_back_whole_between_group_commits() {
        let (_dir, db) = db().await;
        let small = (0..100i64).map(|k| {
            let db = db.clone();
            tokio::spawn(async move {
                db.write_sqlite(move |tx| -> anyhow::Result<usize> {
                    Ok(tx.execute("INSERT INTO t (k, v) VALUES (?1, 's')", [k])?)
                })
                .await
            })
        });
        let big_ok = db.write_alone_sqlite(|tx| -> anyhow::Result<()> {
            for k in 1000..3000i64 {
                tx.execute("INSERT INTO t (k, v) VALUES (?1, 'big')", [k])?;
            }
            Ok(())
        });
        let big_failing = db.write_alone_sqlite(|tx| -> anyhow::Result<()> {
            for k in 5000..7000i64 {
                tx.execute("INSERT INTO t (k, v) VALUES (?1, 'bad')", [k])?;
            }
            anyhow::bail!("the big write fails at its end")
        });
        let (ok, failed) = tokio::join!(big_ok, big_failing);
        ok.unwrap();
        assert!(failed.unwrap_err().to_string().contains("fails at its end"));
        for r in futures_util::future::join_all(small).await {
            r.unwrap().unwrap();
        }
        let conn = db.conn().unwrap();
        let count =
            |v: &str| -> i64 { conn.query_row("SELECT COUNT(*) FROM t WHERE v = ?1", [v], |r| r.get(0)).unwrap() };
        assert_eq!((count("s"), count("big"), count("bad")), (100, 2000, 0));
    }

    #[tokio::test]
    async fn a_panicking_write_is_an_error_and_the_writer_goes_on() {
        let (_dir, db) = db().await;
        let panicked: anyhow::Result<()> = db.write_sqlite(|_| panic!("boom")).await;
        assert!(panicked.is_err());
        let ok: anyhow::Result<usize> =
            db.write_sqlite(|tx| Ok(tx.execute("INSERT INTO t (k, v) VALUES (1, 'a')", [])?)).await;
        assert_eq!(ok.unwrap(), 1);
    }
}
