//! PostgreSQL, the second engine: pooled connections (r2d2) each with its
//! own cache of prepared statements, the embedded migrations in
//! `migrations/postgres` applied at start, and the translation of the
//! seam's values to PostgreSQL's types and back. Only `db` uses it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use postgres::types::{IsNull, ToSql as PgToSql, Type};
use postgres::{Client, NoTls, Statement};

use crate::db::value::ValueRef;

/// A pooled connection and the statements prepared on it.
pub struct PgConn {
    /// Always Some but while being dropped.
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    /// This connection's number in its pool (see [`Exec::slot`]).
    slot: u32,
}

impl PgConn {
    pub fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("a connection's client lives as long as it")
    }
}

/// Closing the synchronous client blocks; an async runtime's thread (where
/// the last handle on the pool may go) must not: it closes on a thread of its own.
impl Drop for PgConn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            std::thread::spawn(move || drop(client));
        }
    }
}

/// Connects with `config`, as r2d2 asks.
pub struct Manager {
    config: postgres::Config,
    /// The next connection's slot; it starts at a random number, so that
    /// the connections of several tills on one database mostly differ.
    next_slot: std::sync::atomic::AtomicU32,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        let slot = self.next_slot.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(PgConn { client: Some(self.config.connect(NoTls)?), statements: HashMap::new(), slot })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        conn.client().simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.as_ref().is_none_or(Client::is_closed)
    }
}

pub type Pool = r2d2::Pool<Manager>;

/// Most statements kept prepared per connection; past it the cache starts over.
const MAX_STATEMENTS: usize = 512;

/// Parses a libpq-style URL (`postgres://user:pass@host:port/db?…`, several
/// hosts and `target_session_attrs=read-write` included) and builds the pool.
pub fn connect(url: &str, pool_size: u32, connect_timeout: Duration) -> anyhow::Result<Pool> {
    let mut config: postgres::Config =
        url.parse().map_err(|e| anyhow::anyhow!("database.url is not a PostgreSQL URL: {e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("till");
    }
    r2d2::Pool::builder()
        .max_size(pool_size)
        .connection_timeout(connect_timeout.max(Duration::from_secs(1)))
        .build(Manager { config, next_slot: rand::random::<u32>().into() })
        .map_err(|e| anyhow::anyhow!("cannot reach the PostgreSQL server of database.url: {e}"))
}

/// A PostgreSQL URL as logs may show it: hosts, ports and database, never
/// the user's password.
pub fn describe(url: &str) -> String {
    let Ok(c) = url.parse::<postgres::Config>() else { return "(database.url)".into() };
    let ports = c.get_ports().iter().copied().chain(std::iter::repeat(5432));
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .zip(ports)
        .map(|(h, port)| match h {
            postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    format!("{}/{}", hosts.join(","), c.get_dbname().unwrap_or("postgres"))
}

/// What the seam needs of an open PostgreSQL transaction, object-safe so
/// that [`crate::db::Tx`] need not carry its lifetimes.
pub trait Exec {
    fn execute(&mut self, sql: &str, params: &[PgValue<'_>]) -> Result<u64, postgres::Error>;
    fn query(&mut self, sql: &str, params: &[PgValue<'_>]) -> Result<Vec<postgres::Row>, postgres::Error>;
    /// The slot of the pooled connection this runs on: no two
    /// transactions of one pool at the same moment share it.
    fn slot(&self) -> u32 {
        0
    }
}

/// A transaction and its connection's statement cache.
pub struct PgTx<'t, 'c> {
    pub tx: postgres::Transaction<'t>,
    pub statements: &'c mut HashMap<String, Statement>,
    pub slot: u32,
}

impl PgTx<'_, '_> {
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.tx.prepare(sql)?;
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

fn refs<'v>(params: &'v [PgValue<'_>]) -> Vec<&'v (dyn PgToSql + Sync)> {
    params.iter().map(|p| p as &(dyn PgToSql + Sync)).collect()
}

impl Exec for PgTx<'_, '_> {
    fn execute(&mut self, sql: &str, params: &[PgValue<'_>]) -> Result<u64, postgres::Error> {
        let st = self.statement(sql)?;
        self.tx.execute(&st, &refs(params))
    }

    fn query(&mut self, sql: &str, params: &[PgValue<'_>]) -> Result<Vec<postgres::Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.tx.query(&st, &refs(params))
    }

    fn slot(&self) -> u32 {
        self.slot
    }
}

/// How a transaction on a connection begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// A read: one REPEATABLE READ snapshot, read-only (it never fails to serialize).
    Read,
    /// A write beside the other writes.
    Write(Isolation),
    /// A write that no other write runs beside: the run after a
    /// serialization failure or a deadlock, so that it cannot fail for
    /// that reason again.
    WriteAlone(Isolation),
}

/// The table whose lock gives writes their turn (see [`PgConn::begin`]),
/// an engine's device like `till_schema_migrations`: it holds no rows.
const CREATE_WRITE_TURN: &str = "CREATE TABLE IF NOT EXISTS till_write_turn ()";
const WRITE_BESIDE_OTHERS: &str = "LOCK TABLE till_write_turn IN ROW SHARE MODE";
const WRITE_ALONE: &str = "LOCK TABLE till_write_turn IN EXCLUSIVE MODE";

impl PgConn {
    /// A transaction on this connection, with its statement cache.
    ///
    /// A write first locks the table `till_write_turn`: in ROW SHARE mode, which
    /// writes share, or, [`Begin::WriteAlone`], in EXCLUSIVE mode, which
    /// waits for the writes under way to end and holds new ones back until
    /// it commits (a waiting EXCLUSIVE lock queues later requests behind
    /// it, so it is never starved). `LOCK TABLE` takes no snapshot: the
    /// write's snapshot is taken after its turn came, by its first query,
    /// and sees every write that went before. On a hot row (the PSP's
    /// balance account, which every pay-in moves) optimistic retries alone
    /// could lose again and again; this way a write that lost once wins
    /// the next time, and writes that do not meet run side by side.
    pub fn begin(&mut self, how: Begin) -> Result<PgTx<'_, '_>, postgres::Error> {
        use postgres::IsolationLevel::{ReadCommitted, RepeatableRead, Serializable};
        let PgConn { client, statements, slot } = self;
        let client = client.as_mut().expect("a connection's client lives as long as it");
        let builder = client.build_transaction();
        let level = |isolation| match isolation {
            Isolation::Serializable => Serializable,
            Isolation::ReadCommitted => ReadCommitted,
        };
        let mut tx = match how {
            Begin::Read => builder.read_only(true).isolation_level(RepeatableRead).start()?,
            Begin::Write(i) | Begin::WriteAlone(i) => builder.isolation_level(level(i)).start()?,
        };
        match how {
            Begin::Read => {}
            Begin::Write(_) => tx.batch_execute(WRITE_BESIDE_OTHERS)?,
            Begin::WriteAlone(_) => tx.batch_execute(WRITE_ALONE)?,
        }
        Ok(PgTx { tx, statements, slot: *slot })
    }
}

/// How a write is isolated on PostgreSQL (SQLite's single writer
/// serializes every write whatever this says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Every business step: as if the writes ran one after another.
    #[default]
    Serializable,
    /// Only for a single statement whose rows are taken with explicit row
    /// locks (`FOR UPDATE SKIP LOCKED`): the locks, not the isolation level,
    /// make it exclusive, and serializable's predicate tracking would only
    /// fail concurrent claimers of different rows.
    ReadCommitted,
}

/// A value of the seam bound to a PostgreSQL parameter of whatever type the
/// statement declares (an integer to BIGINT, INTEGER or BOOLEAN, text to
/// TEXT, …), checked, never silently truncated.
#[derive(Debug)]
pub struct PgValue<'a>(pub ValueRef<'a>);

impl PgToSql for PgValue<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::NUMERIC => rust_decimal::Decimal::from(i).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound to a {ty} parameter").into()),
            },
            ValueRef::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => Err(format!("a real cannot be bound to a {ty} parameter").into()),
            },
            ValueRef::Text(s) => s.to_sql(ty, out),
            ValueRef::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// Column `index` of a PostgreSQL row as the seam's value.
pub fn value(row: &postgres::Row, index: usize) -> anyhow::Result<ValueRef<'_>> {
    let column = row.columns().get(index).with_context(|| format!("no column {index}"))?;
    let ty = column.type_().clone();
    let value = match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(ValueRef::Int),
        Type::INT4 => row.try_get::<_, Option<i32>>(index)?.map(|i| ValueRef::Int(i64::from(i))),
        Type::INT2 => row.try_get::<_, Option<i16>>(index)?.map(|i| ValueRef::Int(i64::from(i))),
        Type::BOOL => row.try_get::<_, Option<bool>>(index)?.map(|b| ValueRef::Int(i64::from(b))),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(index)?.map(ValueRef::Real),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(index)?.map(|f| ValueRef::Real(f64::from(f))),
        Type::NUMERIC => row.try_get::<_, Option<rust_decimal::Decimal>>(index)?.map(numeric),
        Type::BYTEA => row.try_get::<_, Option<&[u8]>>(index)?.map(ValueRef::Blob),
        _ => row.try_get::<_, Option<&str>>(index)?.map(ValueRef::Text),
    };
    Ok(value.unwrap_or(ValueRef::Null))
}

/// A NUMERIC (PostgreSQL's `SUM` of BIGINTs) as an integer when it is one.
fn numeric(d: rust_decimal::Decimal) -> ValueRef<'static> {
    use rust_decimal::prelude::ToPrimitive;
    match (d.fract().is_zero(), d.to_i64()) {
        (true, Some(i)) => ValueRef::Int(i),
        _ => ValueRef::Real(d.to_f64().unwrap_or(f64::NAN)),
    }
}

/// Whether a failed statement or commit is one PostgreSQL asks to retry:
/// a serialization failure or a deadlock (SQLSTATE 40001, 40P01).
pub fn is_retryable(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code().is_some_and(|c| *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// The migrations of till's database on PostgreSQL, in step with SQLite's.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_queue.sql")),
    (3, include_str!("../../migrations/postgres/0003_idempotency.sql")),
    (4, include_str!("../../migrations/postgres/0004_merchant_webhooks.sql")),
    (5, include_str!("../../migrations/postgres/0005_refunds_payouts.sql")),
    (6, include_str!("../../migrations/postgres/0006_reconciliation.sql")),
    (7, include_str!("../../migrations/postgres/0007_admin.sql")),
    (8, include_str!("../../migrations/postgres/0008_fewer_order_indexes.sql")),
    (9, include_str!("../../migrations/postgres/0009_login_attempts.sql")),
    (10, include_str!("../../migrations/postgres/0010_psp_charges.sql")),
    (11, include_str!("../../migrations/postgres/0011_psp_call_version.sql")),
    (12, include_str!("../../migrations/postgres/0012_psp_requests.sql")),
    (13, include_str!("../../migrations/postgres/0013_list_indexes.sql")),
    (14, include_str!("../../migrations/postgres/0014_seller_refunded.sql")),
    (15, include_str!("../../migrations/postgres/0015_reconciliation_items_record.sql")),
    (16, include_str!("../../migrations/postgres/0016_descriptions_metadata.sql")),
    (17, include_str!("../../migrations/postgres/0017_webhook_management.sql")),
    (18, include_str!("../../migrations/postgres/0018_api_key_last_used.sql")),
    (19, include_str!("../../migrations/postgres/0019_scheduler_lease.sql")),
    (20, include_str!("../../migrations/postgres/0020_balance_shards.sql")),
    (21, include_str!("../../migrations/postgres/0021_manual_capture.sql")),
    (22, include_str!("../../migrations/postgres/0022_disputes.sql")),
];

/// The version the embedded migrations reach.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Applies the migrations not applied yet, in one transaction (DDL is
/// transactional on PostgreSQL), under an advisory lock so that tills
/// starting together migrate once.
/// Returns the version reached.
pub fn migrate(client: &mut Client) -> anyhow::Result<i64> {
    client
        // Not the server's NOTICE that the table exists already, at every start.
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS till_schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .context("creating the migrations table")?;
    let mut tx = client.transaction()?;
    // One till migrates at a time (the lock ends with the transaction).
    tx.execute("SELECT pg_advisory_xact_lock(7311001)", &[])?;
    tx.batch_execute(CREATE_WRITE_TURN).context("creating the table of write turns")?;
    let applied: Vec<i64> =
        tx.query("SELECT version FROM till_schema_migrations", &[])?.iter().map(|r| r.get(0)).collect();
    let current = applied.iter().copied().max().unwrap_or(0);
    anyhow::ensure!(
        current <= latest_version(),
        "the database is at version {current}, newer than this till knows ({}): run a newer till",
        latest_version()
    );
    // Every version not applied yet, in order (numbers may have gaps).
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        tx.batch_execute(sql).with_context(|| format!("applying PostgreSQL migration {version}"))?;
        tx.execute(
            "INSERT INTO till_schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &crate::db::now()],
        )?;
    }
    tx.commit()?;
    Ok(latest_version())
}
