//! The database: SQLite (embedded, the default) or PostgreSQL, behind one
//! handle. Code outside `db` speaks only [`Tx`] (see `sql`); which engine
//! runs is decided once, at start, from `database.url`.
//!
//! SQLite: pooled readers with the PRAGMAs set on every one, one writer
//! thread that group-commits `BEGIN IMMEDIATE` transactions, embedded
//! migrations. PostgreSQL (`pg`): pooled connections, every write a
//! `SERIALIZABLE` transaction run again on a serialization failure or a
//! deadlock. On both, blocking work stays off the async executor.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use rusqlite_migration::{M, Migrations};

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

/// A cheap-to-clone handle on one database.
#[derive(Clone)]
pub struct Db {
    engine: Engine,
    /// Whether the storage takes writes (see `health`).
    health: std::sync::Arc<health::Health>,
}

#[derive(Clone)]
enum Engine {
    Sqlite {
        pool: Pool,
        writer: writer::Writer,
        /// Dropped with the last handle, which stops the checkpointer.
        _checkpointer: std::sync::Arc<std::sync::mpsc::SyncSender<()>>,
    },
    Postgres {
        pool: pg::Pool,
        /// One per pooled connection: an async caller waits here for its
        /// turn, not on a blocking thread of its own (a hundred requests at
        /// once would otherwise hold a hundred threads, each waiting for
        /// one of the pool's connections).
        turns: std::sync::Arc<tokio::sync::Semaphore>,
        /// Writes run again after a serialization failure or a deadlock,
        /// since the pool opened (the price of contention, for benchmarks
        /// and metrics).
        reruns: std::sync::Arc<std::sync::atomic::AtomicU64>,
    },
}

/// How often a PostgreSQL write is run when it keeps meeting serialization
/// failures or deadlocks, and the first pause between two runs (doubled
/// each time, with jitter).
const PG_WRITE_RUNS: u32 = 8;
const PG_RETRY_PAUSE_MS: u64 = 2;

pub mod copy;
pub mod errors;
pub mod health;
pub mod pg;
pub mod sql;
pub mod value;
pub mod writer;

pub use crate::params;
pub use errors::{is_storage_trouble, is_unique_violation};
pub use health::Trouble;
pub use pg::Isolation;
pub use sql::{FromSql, Row, ToSql, Tx, ValueRef};
pub use value::Value;

/// The migrations of till's own database, in order, compiled into the binary.
pub fn till_migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../../migrations/till/0001_init.sql")),
        M::up(include_str!("../../migrations/till/0002_queue.sql")),
        M::up(include_str!("../../migrations/till/0003_idempotency.sql")),
        M::up(include_str!("../../migrations/till/0004_merchant_webhooks.sql")),
        M::up(include_str!("../../migrations/till/0005_refunds_payouts.sql")),
        M::up(include_str!("../../migrations/till/0006_reconciliation.sql")),
        M::up(include_str!("../../migrations/till/0007_admin.sql")),
        M::up(include_str!("../../migrations/till/0008_fewer_order_indexes.sql")),
        M::up(include_str!("../../migrations/till/0009_login_attempts.sql")),
        M::up(include_str!("../../migrations/till/0010_psp_charges.sql")),
        M::up(include_str!("../../migrations/till/0011_psp_call_version.sql")),
        M::up(include_str!("../../migrations/till/0012_psp_requests.sql")),
        M::up(include_str!("../../migrations/till/0013_list_indexes.sql")),
        M::up(include_str!("../../migrations/till/0014_seller_refunded.sql")),
        M::up(include_str!("../../migrations/till/0015_reconciliation_items_record.sql")),
        M::up(include_str!("../../migrations/till/0019_scheduler_lease.sql")),
        // SQLite counts migrations by position (user_version), so a
        // migration merged later goes last whatever its number: a database
        // that ran 0019 in its 16th place keeps it there.
        M::up(include_str!("../../migrations/till/0016_descriptions_metadata.sql")),
        M::up(include_str!("../../migrations/till/0017_webhook_management.sql")),
        M::up(include_str!("../../migrations/till/0018_api_key_last_used.sql")),
        M::up(include_str!("../../migrations/till/0020_balance_shards.sql")),
        // Rebuilds payment_orders (a CHECK changes): foreign keys are checked before it commits.
        M::up(include_str!("../../migrations/till/0021_manual_capture.sql")).foreign_key_check(),
        // Rebuilds reconciliation_items (a CHECK widens).
        M::up(include_str!("../../migrations/till/0022_disputes.sql")).foreign_key_check(),
    ])
}

/// The sandbox PSP keeps its own database: it is an independent party.
pub fn sandbox_migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../../migrations/sandbox/0001_init.sql")),
        M::up(include_str!("../../migrations/sandbox/0002_report_runs.sql")),
        M::up(include_str!("../../migrations/sandbox/0003_request_log.sql")),
        M::up(include_str!("../../migrations/sandbox/0004_payment_intent_options.sql")),
        M::up(include_str!("../../migrations/sandbox/0005_manual_capture.sql")).foreign_key_check(),
        M::up(include_str!("../../migrations/sandbox/0006_disputes.sql")).foreign_key_check(),
    ])
}

impl Db {
    /// Opens (creating if needed) the database at `path`, applies `migrations`
    /// and returns a pool whose every connection has WAL, foreign keys,
    /// `synchronous=FULL` and a busy timeout.
    pub fn open(
        path: &Path,
        pool_size: u32,
        busy_timeout_ms: u64,
        migrations: &Migrations<'static>,
    ) -> anyhow::Result<Db> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating the database folder {}", dir.display()))?;
        check_writable(dir)?;
        let mut conn = Connection::open(path).with_context(|| format!("opening the database {}", path.display()))?;
        configure(&mut conn, busy_timeout_ms)?;
        // The writer's page cache is large enough that a group-committed
        // batch never spills dirty pages (and syncs) to the WAL before its
        // COMMIT; readers keep SQLite's default, since a reader drops its
        // cache whenever another connection has written. (Its statement
        // journal stays in memory: see `writer` on why large writes run alone.)
        //
        // The checkpointer thread copies the WAL into the database as it
        // grows, but a WAL only starts over when a write begins with every
        // frame copied, and under steady writes the next one begins at once:
        // so the writer finishes the copy itself, between two transactions,
        // once the WAL holds WRITER_CHECKPOINT_FRAMES (little is left to copy
        // by then), and the WAL stays small instead of growing without end.
        // Nothing ever waits for readers to leave the WAL (a RESTART or FULL
        // checkpoint would hold every write meanwhile).
        conn.execute_batch(&format!(
            "PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_FRAMES};
             PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES};"
        ))?;
        let pending = migrations.pending_migrations(&conn).unwrap_or(0);
        migrate_sqlite(&mut conn, migrations).with_context(|| format!("migrating the database {}", path.display()))?;
        if pending > 0 {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            tracing::info!(database = %path.display(), version, applied = pending, "database migrated");
        }
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("db").to_string();
        let checkpointer = std::sync::Arc::new(spawn_checkpointer(path, busy_timeout_ms, &name)?);
        let health = std::sync::Arc::<health::Health>::default();
        let writer = writer::Writer::spawn(conn, &name, health.clone())?;

        let manager = SqliteConnectionManager::file(path)
            .with_init(move |c| configure(c, busy_timeout_ms).map_err(to_sqlite_error));
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)
            .context("building the connection pool")?;
        Ok(Db { engine: Engine::Sqlite { pool, writer, _checkpointer: checkpointer }, health })
    }

    /// Connects to PostgreSQL at `url` (libpq style: several hosts and
    /// `target_session_attrs=read-write` for failover) and applies its migrations.
    pub fn open_postgres(url: &str, pool_size: u32, connect_timeout: Duration) -> anyhow::Result<Db> {
        off_runtime(|| {
            let pool = pg::connect(url, pool_size, connect_timeout)?;
            let mut conn =
                pool.get().map_err(|e| anyhow::anyhow!("cannot reach the PostgreSQL server of database.url: {e}"))?;
            pg::migrate(conn.client()).context("migrating the PostgreSQL database")?;
            let turns = std::sync::Arc::new(tokio::sync::Semaphore::new(pool_size as usize));
            Ok(Db { engine: Engine::Postgres { pool, turns, reruns: Default::default() }, health: Default::default() })
        })
    }

    /// Writes run again after losing a serialization conflict or a
    /// deadlock, since the database was opened (always 0 on SQLite, whose
    /// one writer never conflicts).
    pub fn write_reruns(&self) -> u64 {
        match &self.engine {
            Engine::Sqlite { .. } => 0,
            Engine::Postgres { reruns, .. } => reruns.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Storage trouble under way: writes fail for want of storage (a full
    /// disk, a read-only file system or server, an I/O error) since then.
    pub fn storage_trouble(&self) -> Option<Trouble> {
        self.health.trouble()
    }

    /// The latest episode of storage trouble, under way or ended, numbered.
    pub fn latest_storage_trouble(&self) -> Option<(u64, Trouble)> {
        self.health.latest()
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self.engine, Engine::Postgres { .. })
    }

    fn sqlite_pool(&self) -> anyhow::Result<&Pool> {
        match &self.engine {
            Engine::Sqlite { pool, .. } => Ok(pool),
            Engine::Postgres { .. } => anyhow::bail!("this needs SQLite, and the database is PostgreSQL"),
        }
    }

    /// Reads (and writes outside the group commit, for work that is not
    /// a business step) on tokio's blocking pool, never on an executor thread.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Tx) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        let turn = self.turn().await?;
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            db.run_here(f)
        })
        .await
        .map_err(|e| E::from(anyhow::anyhow!("database task failed: {e}")))?
    }

    /// On PostgreSQL, waits (asynchronously, first come first served, as
    /// long as the pool would wait for a connection) until a pooled
    /// connection is this caller's to take; the turn ends when it is dropped.
    async fn turn(&self) -> anyhow::Result<Option<tokio::sync::OwnedSemaphorePermit>> {
        match &self.engine {
            Engine::Sqlite { .. } => Ok(None),
            Engine::Postgres { pool, turns, .. } => {
                let turn = tokio::time::timeout(pool.connection_timeout(), turns.clone().acquire_owned())
                    .await
                    .context("taking a database connection: timed out waiting for a turn")?
                    .context("the database is closed")?;
                Ok(Some(turn))
            }
        }
    }

    /// [`Db::run`] on the calling thread.
    fn run_here<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Tx) -> Result<T, E>,
        E: From<anyhow::Error>,
    {
        match &self.engine {
            Engine::Sqlite { pool, .. } => {
                let conn = pool.get().context("taking a database connection")?;
                f(&Tx::sqlite(&conn))
            }
            Engine::Postgres { pool, .. } => {
                let mut conn = pool.get().context("taking a database connection")?;
                let mut pt = conn.begin(pg::Begin::Read).context("beginning a read")?;
                let value = f(&Tx::postgres(&mut pt))?;
                pt.tx.commit().context("ending a read")?;
                Ok(value)
            }
        }
    }

    /// [`Db::run`] on rusqlite's own connection: for the sandbox PSP only,
    /// which stands for another party and always keeps its own SQLite file.
    pub async fn run_sqlite<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        let pool = self.sqlite_pool()?.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().context("taking a database connection")?;
            f(&mut conn)
        })
        .await
        .map_err(|e| E::from(anyhow::anyhow!("database task failed: {e}")))?
    }

    /// One business step's writes, atomic and durable when this returns:
    /// run by the database's writer thread inside a `BEGIN IMMEDIATE`
    /// transaction and its own savepoint, committed together with the
    /// writes that arrived at the same time (group commit, see `writer`).
    /// An error from `f` rolls back exactly what `f` wrote.
    ///
    /// On PostgreSQL the write is a `SERIALIZABLE` transaction of its own,
    /// run again (a few times, after a short pause) when PostgreSQL reports
    /// a serialization failure or a deadlock: `f` may run more than once,
    /// so it touches nothing outside its transaction.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&Tx) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        self.write_as(false, f).await
    }

    /// [`Db::write`] at another isolation on PostgreSQL (see [`Isolation`]).
    pub async fn write_with<T, E, F>(&self, isolation: Isolation, f: F) -> Result<T, E>
    where
        F: Fn(&Tx) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        self.write_as_with(false, isolation, f).await
    }

    async fn write_as<T, E, F>(&self, alone: bool, f: F) -> Result<T, E>
    where
        F: Fn(&Tx) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        self.write_as_with(alone, Isolation::Serializable, f).await
    }

    async fn write_as_with<T, E, F>(&self, alone: bool, isolation: Isolation, f: F) -> Result<T, E>
    where
        F: Fn(&Tx) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        match &self.engine {
            Engine::Sqlite { writer, .. } => writer.write(alone, move |tx: &Transaction| f(&Tx::sqlite(tx))).await,
            Engine::Postgres { pool, reruns, .. } => {
                let turn = self.turn().await?;
                let (pool, health, reruns) = (pool.clone(), self.health.clone(), reruns.clone());
                tokio::task::spawn_blocking(move || {
                    let _turn = turn;
                    pg_write(&pool, &health, &reruns, isolation, &f)
                })
                .await
                .map_err(|e| E::from(anyhow::anyhow!("database task failed: {e}")))?
            }
        }
    }

    /// [`Db::write`] on rusqlite's own transaction: for the sandbox PSP only.
    pub async fn write_sqlite<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Transaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        match &self.engine {
            Engine::Sqlite { writer, .. } => writer.write(false, f).await,
            Engine::Postgres { .. } => Err(E::from(anyhow::anyhow!("the sandbox's database is SQLite"))),
        }
    }

    /// Like [`Db::write`], for a write of thousands of rows: it runs by
    /// itself in its own transaction rather than in a shared group commit.
    pub async fn write_alone<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&Tx) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        self.write_as(true, f).await
    }

    /// [`Db::write_alone`] on rusqlite's own transaction: for the sandbox PSP only.
    pub async fn write_alone_sqlite<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Transaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        match &self.engine {
            Engine::Sqlite { writer, .. } => writer.write(true, f).await,
            Engine::Postgres { .. } => Err(E::from(anyhow::anyhow!("the sandbox's database is SQLite"))),
        }
    }

    /// A read for synchronous callers (CLI commands, tests), on the calling thread.
    pub fn read_now<T: Send>(&self, f: impl FnOnce(&Tx) -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
        off_runtime(|| self.run_here(f))
    }

    /// A read of several statements that see one consistent snapshot.
    pub fn read_snapshot<T: Send>(&self, f: impl FnOnce(&Tx) -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
        match &self.engine {
            Engine::Sqlite { pool, .. } => {
                let mut conn = pool.get().context("taking a database connection")?;
                let tx = conn.transaction().context("beginning a read transaction")?;
                f(&Tx::sqlite(&tx))
            }
            // A PostgreSQL read is one REPEATABLE READ snapshot already.
            Engine::Postgres { .. } => off_runtime(|| self.run_here(f)),
        }
    }

    /// A write for synchronous callers (CLI commands, tests), on the
    /// calling thread: on SQLite its own `BEGIN IMMEDIATE` transaction
    /// outside the group commit; on PostgreSQL as [`Db::write`].
    pub fn write_now<T: Send>(&self, f: impl Fn(&Tx) -> anyhow::Result<T> + Send + Sync) -> anyhow::Result<T> {
        match &self.engine {
            Engine::Sqlite { pool, .. } => {
                let mut conn = pool.get().context("taking a database connection")?;
                write_tx(&mut conn, |tx| f(&Tx::sqlite(tx)))
            }
            Engine::Postgres { pool, reruns, .. } => {
                off_runtime(|| pg_write(pool, &self.health, reruns, Isolation::Serializable, &f))
            }
        }
    }

    /// Copies the database to a new SQLite file at `path`, consistent and
    /// safe while till serves (SQLite's online backup). A PostgreSQL
    /// database is backed up with PostgreSQL's own tools.
    pub fn backup(&self, path: &Path) -> anyhow::Result<()> {
        if self.is_postgres() {
            anyhow::bail!(
                "till backup copies SQLite databases; back up PostgreSQL with its own tools: pg_dump for a \
                 logical copy, or base backups (pg_basebackup) with WAL archiving for point-in-time recovery"
            );
        }
        self.conn()?.backup(rusqlite::MAIN_DB, path, None).with_context(|| format!("backing up to {}", path.display()))
    }

    /// A SQLite connection for synchronous callers (tests).
    pub fn conn(&self) -> anyhow::Result<r2d2::PooledConnection<SqliteConnectionManager>> {
        self.sqlite_pool()?.get().context("taking a database connection")
    }
}

/// Whether till may create files in `dir` (the database, its `-wal` and
/// `-shm`): SQLite's own error would only say "unable to open database file".
fn check_writable(dir: &Path) -> anyhow::Result<()> {
    let probe = dir.join(format!(".till-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "the database folder {} is not writable ({e}): till creates its database and the database's \
             -wal and -shm files there; give the user running till write access to it, or set database.path",
            dir.display()
        )),
    }
}

/// One consistent read of the SQLite database at `path`, opened read-only
/// (`mode=ro`): `till check` writes nothing, so it also runs on a copy on
/// read-only storage. A WAL database whose `-shm` cannot be created (a
/// read-only folder) is read as immutable when it has no `-wal` to replay.
/// The schema must be this till's (`till migrate` first otherwise).
pub fn read_sqlite_read_only<T>(
    path: &Path,
    busy_timeout_ms: u64,
    migrations: &Migrations<'static>,
    f: impl FnOnce(&Tx) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use rusqlite::OpenFlags;
    anyhow::ensure!(path.is_file(), "there is no database at {}", path.display());
    let open = |immutable: bool| -> anyhow::Result<Connection> {
        let escaped = path.to_string_lossy().replace('%', "%25").replace('?', "%3f").replace('#', "%23");
        let uri = format!("file:{escaped}?mode=ro{}", if immutable { "&immutable=1" } else { "" });
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&uri, flags)
            .with_context(|| format!("opening the database {} read-only", path.display()))?;
        conn.busy_timeout(Duration::from_millis(busy_timeout_ms))?;
        conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |_| Ok(()))
            .with_context(|| format!("reading the database {} read-only", path.display()))?;
        Ok(conn)
    };
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut conn = match open(false) {
        Ok(conn) => conn,
        Err(_) if !Path::new(&wal).exists() => open(true)?,
        Err(e) => return Err(e),
    };
    let pending = migrations.pending_migrations(&conn).context("reading the database's schema version")?;
    anyhow::ensure!(
        pending == 0,
        "the database {} lacks {pending} migration(s) of this till: run `till migrate` first",
        path.display()
    );
    let tx = conn.transaction().context("beginning a read transaction")?;
    f(&Tx::sqlite(&tx))
}

/// Runs `f` where blocking on PostgreSQL's client is allowed: on a thread
/// of its own when called from inside the async runtime (whose threads the
/// synchronous client may not block), here otherwise.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// One PostgreSQL write: `f` in a `SERIALIZABLE` transaction, committed;
/// run again when a statement or the commit fails as PostgreSQL asks to
/// retry, at most [`PG_WRITE_RUNS`] times, after a short, growing, jittered
/// pause. Every run after the first runs alone (no other write beside it,
/// see [`pg::PgConn::begin`]), so that it does not lose to the same
/// conflict again. A write that fails for want of storage, or one that
/// commits changes, tells `health`; each run again is counted in `reruns`.
fn pg_write<T, E, F>(
    pool: &pg::Pool,
    health: &health::Health,
    reruns: &std::sync::atomic::AtomicU64,
    isolation: Isolation,
    f: &F,
) -> Result<T, E>
where
    F: Fn(&Tx) -> Result<T, E>,
    E: From<anyhow::Error>,
{
    use rand::Rng;
    let mut pause_ms = PG_RETRY_PAUSE_MS;
    let mut run = 1;
    loop {
        let mut conn = pool.get().context("taking a database connection")?;
        let how = if run == 1 { pg::Begin::Write(isolation) } else { pg::Begin::WriteAlone(isolation) };
        let mut pt = conn.begin(how).context("beginning a write transaction")?;
        let (value, retry, storage, wrote) = {
            let tx = Tx::postgres(&mut pt);
            let value = f(&tx);
            (value, tx.must_retry(), tx.storage_failed(), tx.wrote())
        };
        let last = run == PG_WRITE_RUNS;
        match value {
            Err(e) if retry && !last => drop(e),
            Err(e) => {
                if let Some(why) = storage {
                    health.failed(&why);
                }
                return Err(e);
            }
            Ok(value) => match timed_commit(pt.tx) {
                Ok(()) => {
                    if wrote {
                        health.wrote();
                    }
                    return Ok(value);
                }
                Err(e) if pg::is_retryable(&e) && !last => {}
                Err(e) => {
                    if errors::is_pg_storage_error(&e) {
                        health.failed(&format!("committing: {e}"));
                    }
                    return Err(E::from(anyhow::Error::new(e).context("committing")));
                }
            },
        }
        reruns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::METRICS.write_reruns.inc();
        std::thread::sleep(Duration::from_millis(rand::rng().random_range(pause_ms / 2..=pause_ms)));
        pause_ms = pause_ms.saturating_mul(2);
        run += 1;
    }
}

/// A PostgreSQL write's COMMIT, timed for the metrics.
fn timed_commit(tx: postgres::Transaction<'_>) -> Result<(), postgres::Error> {
    let started = std::time::Instant::now();
    tx.commit()?;
    crate::metrics::record_commit("postgres", 1, started.elapsed());
    Ok(())
}

/// Runs `f` inside `BEGIN IMMEDIATE … COMMIT`; rolls back if it fails.
pub fn write_tx<T, E, F>(conn: &mut Connection, f: F) -> Result<T, E>
where
    F: FnOnce(&Transaction) -> Result<T, E>,
    E: From<anyhow::Error>,
{
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).context("beginning a write transaction")?;
    let value = f(&tx)?;
    tx.commit().context("committing")?;
    Ok(value)
}

/// Copies the WAL back into the database file from a thread of its own, so
/// that commits never pay for it (every connection has automatic
/// checkpoints off). PASSIVE: it never blocks the writer or readers.
fn spawn_checkpointer(
    path: &Path,
    busy_timeout_ms: u64,
    name: &str,
) -> anyhow::Result<std::sync::mpsc::SyncSender<()>> {
    let mut conn = Connection::open(path)?;
    configure(&mut conn, busy_timeout_ms)?;
    let (alive, stopped) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new().name(format!("{name}-checkpoint")).spawn(move || {
        use std::sync::mpsc::RecvTimeoutError;
        loop {
            let last = matches!(
                stopped.recv_timeout(Duration::from_millis(CHECKPOINT_EVERY_MS)),
                Err(RecvTimeoutError::Disconnected)
            );
            let mode = if last { "TRUNCATE" } else { "PASSIVE" };
            if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
            if last {
                return;
            }
        }
    })?;
    Ok(alive)
}

/// How often the WAL is checkpointed.
const CHECKPOINT_EVERY_MS: u64 = 500;
/// WAL frames (pages) past which the writer checkpoints after a commit.
const WRITER_CHECKPOINT_FRAMES: i64 = 4_096;
/// What the WAL file is cut back to when it starts over after a spike.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 << 20;

fn configure(conn: &mut Connection, busy_timeout_ms: u64) -> anyhow::Result<()> {
    conn.busy_timeout(Duration::from_millis(busy_timeout_ms))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "SQLite refused WAL mode ({mode})");
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;",
    )?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(())
}

/// Applies the pending migrations with foreign keys off, as SQLite's own
/// recipe for changing a table's constraints asks (make the new table,
/// copy, drop the old, rename: with foreign keys on, dropping a table that
/// other tables name deletes through them or fails). The pragma is a no-op
/// inside a transaction, so it is set around the migrations' one
/// transaction; a migration that rebuilds a table runs
/// `foreign_key_check` before it commits (`M::foreign_key_check`), and the
/// whole database is checked again once foreign keys are back on (only
/// when something was migrated: the check reads every table): a migration
/// that left a dangling reference fails the start.
pub fn migrate_sqlite(conn: &mut Connection, migrations: &Migrations<'static>) -> anyhow::Result<()> {
    if migrations.pending_migrations(conn)? == 0 {
        return Ok(());
    }
    conn.pragma_update(None, "foreign_keys", false)?;
    let migrated = migrations.to_latest(conn);
    conn.pragma_update(None, "foreign_keys", true)?;
    migrated?;
    let dangling: i64 = conn.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
    anyhow::ensure!(dangling == 0, "{dangling} rows name a row that does not exist (PRAGMA foreign_key_check)");
    let on: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    anyhow::ensure!(on, "foreign keys did not come back on after the migrations");
    Ok(())
}

fn to_sqlite_error(e: anyhow::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.into())
}

/// Now, as stored in `*_ms` columns: Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Now, in UTC, as stored: RFC 3339 with milliseconds, so text order is time order.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pragmas_hold_on_every_pooled_connection() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), 2, 1000, &till_migrations()).unwrap();
        let conn = db.conn().unwrap();
        let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!((fk, sync, mode.as_str()), (1, 2, "wal"));
    }

    #[test]
    fn migrations_are_valid() {
        till_migrations().validate().unwrap();
        sandbox_migrations().validate().unwrap();
    }

    #[test]
    fn seller_refunded_shares_are_backfilled_from_live_refunds() {
        let mut conn = Connection::open_in_memory().unwrap();
        till_migrations().to_version(&mut conn, 12).unwrap();
        conn.execute_batch(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, created_at) VALUES ('k', 'k', 'h', 'p', 'now');
             INSERT INTO payment_events (checkout_id, api_key_id, buyer_info, payment_method, request_hash,
                                         created_at, updated_at) VALUES ('c', 'k', '{}', 'token', 'h', 'now', 'now');
             INSERT INTO payment_orders (payment_order_id, checkout_id, position, buyer_account, seller_id,
                 amount_minor, currency, payment_order_status, seller_amount_minor, refunded_minor, created_at,
                 updated_at)
             VALUES ('o1', 'c', 0, 'b', 's', 1000, 'USD', 'SUCCESS', 900, 600, 'now', 'now'),
                    ('o2', 'c', 1, 'b', 's', 1000, 'USD', 'SUCCESS', 900, 0, 'now', 'now');
             INSERT INTO refunds (refund_id, payment_order_id, amount_minor, currency, status, seller_part_minor,
                                  commission_part_minor, created_by, created_at, updated_at)
             VALUES ('r1', 'o1', 330, 'USD', 'SUCCEEDED', 300, 30, 'k', 'now', 'now'),
                    ('r2', 'o1', 270, 'USD', 'PENDING', 243, 27, 'k', 'now', 'now'),
                    ('r3', 'o1', 100, 'USD', 'FAILED', 90, 10, 'k', 'now', 'now');",
        )
        .unwrap();
        migrate_sqlite(&mut conn, &till_migrations()).unwrap();
        let shares: Vec<(String, i64)> = conn
            .prepare("SELECT payment_order_id, seller_refunded_minor FROM payment_orders ORDER BY payment_order_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(shares, vec![("o1".to_string(), 543), ("o2".to_string(), 0)], "failed refunds give theirs back");
    }
}
