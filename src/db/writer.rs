//! Group commit: one thread owns the database's write connection and runs
//! every `Db::write` closure. Closures that arrive while a commit is under
//! way are run together in the next transaction, each inside its own
//! savepoint, so a failing closure rolls back only its own changes; one
//! `COMMIT` (one fsync under `synchronous=FULL`) then makes the whole batch
//! durable, and only then does each caller get its answer.

use std::panic::{AssertUnwindSafe, catch_unwind};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

/// Closures run in one transaction at the most.
pub const MAX_BATCH: usize = 512;
/// Closures waiting for the writer at the most; callers wait beyond that.
pub const QUEUE_DEPTH: usize = 8_192;

/// A closure and where its answer goes, with its type erased.
trait WriteJob: Send {
    /// Runs the closure; returns whether it succeeded (its changes are kept).
    fn run(&mut self, tx: &Transaction) -> bool;
    /// Sends the answer: the closure's own, once the batch is durable, or
    /// the commit's failure.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct Job<F, T, E> {
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
    fn run(&mut self, tx: &Transaction) -> bool {
        let Some(f) = self.f.take() else { return false };
        let result = catch_unwind(AssertUnwindSafe(|| f(tx)))
            .unwrap_or_else(|_| Err(E::from(anyhow::anyhow!("a database write panicked"))));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let answer = match (commit, self.result) {
            // A closure that failed was rolled back: its own error is the answer.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Err(e), Some(Ok(_))) => Err(E::from(anyhow::anyhow!("the write was not committed: {e}"))),
            (_, None) => Err(E::from(anyhow::anyhow!("the write was not run: the transaction failed first"))),
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
    /// Starts the writer thread on its own connection.
    pub fn spawn(conn: Connection, name: &str) -> anyhow::Result<Writer> {
        let (jobs, rx) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new().name(format!("{name}-writer")).spawn(move || run(conn, rx))?;
        Ok(Writer { jobs })
    }

    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Transaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job { f: Some(f), result: None, reply });
        self.jobs.send(job).await.map_err(|_| E::from(anyhow::anyhow!("the database writer has stopped")))?;
        answer.await.map_err(|_| E::from(anyhow::anyhow!("the database writer dropped a write")))?
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Box<dyn WriteJob>>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch);
    }
}

fn run_batch(conn: &mut Connection, mut batch: Vec<Box<dyn WriteJob>>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return finish_all(batch, Err(format!("beginning a write transaction: {e}"))),
    };
    for job in &mut batch {
        if let Err(e) = tx.execute_batch("SAVEPOINT job") {
            drop(tx);
            return finish_all(batch, Err(format!("opening a savepoint: {e}")));
        }
        let ok = job.run(&tx);
        let closed =
            if ok { tx.execute_batch("RELEASE job") } else { tx.execute_batch("ROLLBACK TO job; RELEASE job") };
        // SQLite may have ended the transaction itself (a disk error): stop
        // here rather than let the next closures run outside a transaction.
        if let Err(e) = closed
            .map_err(|e| e.to_string())
            .and_then(|()| if tx.is_autocommit() { Err("the transaction ended early".to_string()) } else { Ok(()) })
        {
            drop(tx);
            return finish_all(batch, Err(e));
        }
    }
    let commit = tx.commit().map_err(|e| format!("committing: {e}"));
    if let Err(e) = &commit {
        tracing::error!(error = %e, writes = batch.len(), "a group commit failed");
    }
    finish_all(batch, commit);
}

fn finish_all(batch: Vec<Box<dyn WriteJob>>, commit: Result<(), String>) {
    for job in batch {
        job.finish(commit.clone());
    }
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
                db.write(move |tx| -> anyhow::Result<()> {
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

    #[tokio::test]
    async fn a_panicking_write_is_an_error_and_the_writer_goes_on() {
        let (_dir, db) = db().await;
        let panicked: anyhow::Result<()> = db.write(|_| panic!("boom")).await;
        assert!(panicked.is_err());
        let ok: anyhow::Result<usize> =
            db.write(|tx| Ok(tx.execute("INSERT INTO t (k, v) VALUES (1, 'a')", [])?)).await;
        assert_eq!(ok.unwrap(), 1);
    }
}
