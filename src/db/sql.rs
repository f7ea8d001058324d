//! The storage seam: the one handle through which till's code speaks SQL.
//!
//! Core code and stores never name the engine. They take a [`Tx`] (an open
//! write transaction, or a read connection), write SQL in the dialect
//! SQLite and PostgreSQL share with `$1…$n` placeholders, bind values
//! through [`ToSql`] and read columns through [`FromSql`]. Only this module
//! knows how a value crosses into the engine: SQLite reads `$1` as `?1`;
//! PostgreSQL reads it natively.
//!
//! The calls mirror rusqlite's shape (`execute`, `query_row`, `query_opt`,
//! `query_map` with a row-mapping closure), so a store reads like plain SQL.

use std::cell::{Cell, RefCell};
use std::fmt;

use anyhow::Context;

use crate::db::pg;
pub use crate::db::value::ValueRef;

/// A value till binds to a statement's parameter.
pub trait ToSql {
    fn to_sql(&self) -> ValueRef<'_>;
}

/// A value till reads from a column.
pub trait FromSql: Sized {
    fn from_sql(value: ValueRef<'_>) -> anyhow::Result<Self>;
}

/// `params![a, b, c]`: the parameters `$1, $2, $3` of a statement.
#[macro_export]
macro_rules! params {
    () => { &[] as &[&dyn $crate::db::ToSql] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::db::ToSql),+] as &[&dyn $crate::db::ToSql] };
}

/// An open transaction or a read connection of till's database.
pub struct Tx<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres {
        tx: RefCell<&'a mut dyn pg::Exec>,
        /// A statement failed as PostgreSQL asks to retry (a serialization
        /// failure, a deadlock): the whole write is run again.
        retry: Cell<bool>,
        /// A statement failed for want of storage (its error, for the logs).
        storage: RefCell<Option<String>>,
        /// A statement changed rows.
        wrote: Cell<bool>,
    },
}

/// One row of a result, read by column index (from 0).
pub struct Row<'a, 'r> {
    inner: RowInner<'a, 'r>,
}

enum RowInner<'a, 'r> {
    Sqlite(&'r rusqlite::Row<'a>),
    Postgres(&'r postgres::Row),
}

impl Row<'_, '_> {
    pub fn get<T: FromSql>(&self, index: usize) -> anyhow::Result<T> {
        let value = match &self.inner {
            RowInner::Sqlite(row) => {
                from_sqlite(row.get_ref(index).with_context(|| format!("reading column {index}"))?)
            }
            RowInner::Postgres(row) => pg::value(row, index).with_context(|| format!("reading column {index}"))?,
        };
        T::from_sql(value).with_context(|| format!("column {index}"))
    }
}

impl<'a> Tx<'a> {
    /// The seam over one SQLite connection (or transaction, which derefs to one).
    pub(crate) fn sqlite(conn: &'a rusqlite::Connection) -> Tx<'a> {
        Tx { inner: Inner::Sqlite(conn) }
    }

    /// The seam over an open PostgreSQL transaction.
    pub(crate) fn postgres(tx: &'a mut dyn pg::Exec) -> Tx<'a> {
        Tx {
            inner: Inner::Postgres {
                tx: RefCell::new(tx),
                retry: Cell::new(false),
                storage: RefCell::new(None),
                wrote: Cell::new(false),
            },
        }
    }

    /// The error of a statement that failed for want of storage, if one did.
    pub(crate) fn storage_failed(&self) -> Option<String> {
        match &self.inner {
            Inner::Postgres { storage, .. } => storage.borrow().clone(),
            Inner::Sqlite(_) => None,
        }
    }

    /// Whether a statement changed rows.
    pub(crate) fn wrote(&self) -> bool {
        matches!(&self.inner, Inner::Postgres { wrote, .. } if wrote.get())
    }

    /// Whether a statement failed in a way PostgreSQL asks to retry.
    pub(crate) fn must_retry(&self) -> bool {
        matches!(&self.inner, Inner::Postgres { retry, .. } if retry.get())
    }

    /// Runs a statement; returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn ToSql]) -> anyhow::Result<usize> {
        match &self.inner {
            Inner::Sqlite(conn) => {
                let mut st = prepare_sqlite(conn, sql)?;
                bind(&mut st, params)?;
                st.raw_execute().with_context(|| format!("running {}", head(sql)))
            }
            Inner::Postgres { tx, retry, storage, wrote } => {
                let values: Vec<pg::PgValue> = params.iter().map(|p| pg::PgValue(p.to_sql())).collect();
                let n = tx.borrow_mut().execute(sql, &values).map_err(|e| pg_error(e, retry, storage, sql))?;
                if n > 0 {
                    wrote.set(true);
                }
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// The first row, mapped by `f`; an error if there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        f: impl FnOnce(&Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.query_opt(sql, params, f)?.with_context(|| format!("no row from {}", head(sql)))
    }

    /// The first row, mapped by `f`, if there is one.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        f: impl FnOnce(&Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        let mut f = Some(f);
        let mut first = None;
        self.each(sql, params, true, &mut |row| {
            if let Some(f) = f.take() {
                first = Some(f(row)?);
            }
            Ok(())
        })?;
        Ok(first)
    }

    /// Every row, each mapped by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        mut f: impl FnMut(&Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<Vec<T>> {
        let mut out = Vec::new();
        self.each(sql, params, false, &mut |row| {
            out.push(f(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// What takes rows for this transaction alone, skipping those another
    /// holds: PostgreSQL's `FOR UPDATE SKIP LOCKED` (use with
    /// [`crate::db::Isolation::ReadCommitted`]); nothing on SQLite, whose
    /// single writer already runs one claim at a time. The one place the
    /// dialects differ for a queue.
    pub fn skip_locked(&self) -> &'static str {
        match self.inner {
            Inner::Sqlite(_) => "",
            Inner::Postgres { .. } => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// Which of `parts` parts of a hot row this write should change (see
    /// `ledger_balance_shards`): on PostgreSQL its pooled connection's
    /// slot (each connection of a pool numbered in turn), so that
    /// concurrent writes mostly change different rows and do not conflict
    /// (one that does is run again, as any conflict is); 0 on SQLite,
    /// whose single writer never conflicts.
    pub fn hot_row_part(&self, parts: u32) -> i64 {
        match &self.inner {
            Inner::Sqlite(_) => 0,
            Inner::Postgres { tx, .. } => i64::from(tx.borrow().slot() % parts.max(1)),
        }
    }

    /// One value of the first row: `SELECT COUNT(*) …`.
    pub fn query_value<T: FromSql>(&self, sql: &str, params: &[&dyn ToSql]) -> anyhow::Result<T> {
        self.query_row(sql, params, |r| r.get(0))
    }

    /// Calls `f` with each row (only the first if `first_only`).
    fn each(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        first_only: bool,
        f: &mut dyn FnMut(&Row) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        match &self.inner {
            Inner::Sqlite(conn) => {
                let mut st = prepare_sqlite(conn, sql)?;
                bind(&mut st, params)?;
                let mut rows = st.raw_query();
                while let Some(row) = rows.next().with_context(|| format!("querying {}", head(sql)))? {
                    f(&Row { inner: RowInner::Sqlite(row) })?;
                    if first_only {
                        break;
                    }
                }
            }
            Inner::Postgres { tx, retry, storage, wrote } => {
                let values: Vec<pg::PgValue> = params.iter().map(|p| pg::PgValue(p.to_sql())).collect();
                let rows = tx.borrow_mut().query(sql, &values).map_err(|e| pg_error(e, retry, storage, sql))?;
                // A query that returns rows may write them (INSERT … RETURNING).
                if !rows.is_empty() && !sql.trim_start().get(..6).is_some_and(|w| w.eq_ignore_ascii_case("select")) {
                    wrote.set(true);
                }
                for row in rows.iter().take(if first_only { 1 } else { usize::MAX }) {
                    f(&Row { inner: RowInner::Postgres(row) })?;
                }
            }
        }
        Ok(())
    }
}

fn prepare_sqlite<'c>(conn: &'c rusqlite::Connection, sql: &str) -> anyhow::Result<rusqlite::CachedStatement<'c>> {
    let sql = sqlite_placeholders(sql);
    conn.prepare_cached(&sql).with_context(|| format!("preparing {}", head(&sql)))
}

/// A PostgreSQL error, remembering whether the write must be run again.
fn pg_error(e: postgres::Error, retry: &Cell<bool>, storage: &RefCell<Option<String>>, sql: &str) -> anyhow::Error {
    if pg::is_retryable(&e) {
        retry.set(true);
    }
    if crate::db::errors::is_pg_storage_error(&e) {
        storage.borrow_mut().get_or_insert_with(|| format!("running {}: {e}", head(sql)));
    }
    anyhow::Error::new(e).context(format!("running {}", head(sql)))
}

impl fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tx")
    }
}

fn bind(st: &mut rusqlite::Statement<'_>, params: &[&dyn ToSql]) -> anyhow::Result<()> {
    let expected = st.parameter_count();
    anyhow::ensure!(params.len() == expected, "the statement takes {expected} parameters, not {}", params.len());
    for (i, p) in params.iter().enumerate() {
        st.raw_bind_parameter(i + 1, SqliteValue(p.to_sql()))?;
    }
    Ok(())
}

struct SqliteValue<'a>(ValueRef<'a>);

impl rusqlite::ToSql for SqliteValue<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef as R};
        Ok(ToSqlOutput::Borrowed(match self.0 {
            ValueRef::Null => R::Null,
            ValueRef::Int(i) => R::Integer(i),
            ValueRef::Real(f) => R::Real(f),
            ValueRef::Text(s) => R::Text(s.as_bytes()),
            ValueRef::Blob(b) => R::Blob(b),
        }))
    }
}

fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> ValueRef<'_> {
    use rusqlite::types::ValueRef as R;
    match value {
        R::Null => ValueRef::Null,
        R::Integer(i) => ValueRef::Int(i),
        R::Real(f) => ValueRef::Real(f),
        // SQLite text is UTF-8 whenever till wrote it; anything else is read as bytes.
        R::Text(t) => std::str::from_utf8(t).map_or(ValueRef::Blob(t), ValueRef::Text),
        R::Blob(b) => ValueRef::Blob(b),
    }
}

/// `$1…$n` as SQLite's numbered `?1…?n` (outside quoted text), so that a
/// parameter may appear in any order and more than once, as in PostgreSQL.
fn sqlite_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('$') {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '$') if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('?');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

/// The start of a statement, for error messages.
fn head(sql: &str) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(80).collect()
}

fn wrong(value: ValueRef<'_>, wanted: &str) -> anyhow::Error {
    anyhow::anyhow!("expected {wanted}, found {}", value.kind())
}

impl ToSql for i64 {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Int(*self)
    }
}

macro_rules! small_ints {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> ValueRef<'_> {
                ValueRef::Int(i64::from(*self))
            }
        }
        impl FromSql for $t {
            fn from_sql(value: ValueRef<'_>) -> anyhow::Result<Self> {
                let i = i64::from_sql(value)?;
                <$t>::try_from(i).map_err(|_| anyhow::anyhow!("{i} does not fit {}", stringify!($t)))
            }
        }
    )*};
}
small_ints!(i32, u32, u16, u8);

impl ToSql for usize {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl FromSql for usize {
    fn from_sql(value: ValueRef<'_>) -> anyhow::Result<Self> {
        let i = i64::from_sql(value)?;
        usize::try_from(i).map_err(|_| anyhow::anyhow!("{i} is not a count"))
    }
}

impl FromSql for i64 {
    fn from_sql(value: ValueRef<'_>) -> anyhow::Result<Self> {
        match value {
            ValueRef::Int(i) => Ok(i),
            other => Err(wrong(other, "an integer")),
        }
    }
}

/// Booleans are stored as 0 and 1 on every engine (`flag = 1` in SQL).
impl ToSql for bool {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Int(i64::from(*self))
    }
}

impl FromSql for bool {
    fn from_sql(value: ValueRef<'_>) -> anyhow::Result<Self> {
        match value {
            ValueRef::Int(0) => Ok(false),
            ValueRef::Int(1) => Ok(true),
            other => Err(wrong(other, "0 or 1")),
        }
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Real(*self)
    }
}

impl FromSql for f64 {
    fn from_sql(value: ValueRef<'_>) -> anyhow::Result<Self> {
        match value {
            ValueRef::Real(f) => Ok(f),
            ValueRef::Int(i) => Ok(i as f64),
            other => Err(wrong(other, "a number")),
        }
    }
}

impl ToSql for str {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl ToSql for String {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl FromSql for String {
    fn from_sql(value: ValueRef<'_>) -> anyhow::Result<Self> {
        match value {
            ValueRef::Text(s) => Ok(s.to_string()),
            other => Err(wrong(other, "text")),
        }
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(value: ValueRef<'_>) -> anyhow::Result<Self> {
        match value {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            ValueRef::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(wrong(other, "a blob")),
        }
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> ValueRef<'_> {
        self.as_ref().map_or(ValueRef::Null, ToSql::to_sql)
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(value: ValueRef<'_>) -> anyhow::Result<Self> {
        match value {
            ValueRef::Null => Ok(None),
            other => T::from_sql(other).map(Some),
        }
    }
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> ValueRef<'_> {
        (**self).to_sql()
    }
}

/// Types that are stored as their text form and read back by parsing it:
/// currencies, statuses, ids.
#[macro_export]
macro_rules! sql_as_text {
    ($t:ty, $as_str:expr, $parse:expr) => {
        impl $crate::db::ToSql for $t {
            fn to_sql(&self) -> $crate::db::ValueRef<'_> {
                $crate::db::ValueRef::Text($as_str(self))
            }
        }
        impl $crate::db::FromSql for $t {
            fn from_sql(value: $crate::db::ValueRef<'_>) -> anyhow::Result<Self> {
                let text = <String as $crate::db::FromSql>::from_sql(value)?;
                $parse(&text).ok_or_else(|| anyhow::anyhow!("'{text}' is not a {}", stringify!($t)))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, name TEXT, flag INTEGER NOT NULL, data BLOB)")
            .unwrap();
        conn
    }

    #[test]
    fn dollar_placeholders_bind_by_number_in_any_order_and_repeated() {
        let conn = db();
        let tx = Tx::sqlite(&conn);
        let n = tx.execute("INSERT INTO t (k, name, flag) VALUES ($2, $1, $3)", params!["a", 7i64, true]).unwrap();
        assert_eq!(n, 1);
        let (k, name, flag): (i64, String, bool) = tx
            .query_row("SELECT k, name, flag FROM t WHERE name = $1 OR k = $1", params!["a"], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((k, name.as_str(), flag), (7, "a", true));
        let quoted: String = tx.query_value("SELECT '$1 stays' || $1", params!["!"]).unwrap();
        assert_eq!(quoted, "$1 stays!");
    }

    #[test]
    fn options_blobs_and_missing_rows() {
        let conn = db();
        let tx = Tx::sqlite(&conn);
        let none: Option<String> = None;
        tx.execute(
            "INSERT INTO t (k, name, flag, data) VALUES ($1, $2, $3, $4)",
            params![1i64, none, false, vec![0u8, 255]],
        )
        .unwrap();
        let (name, data): (Option<String>, Vec<u8>) = tx
            .query_row("SELECT name, data FROM t WHERE k = $1", params![1i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((name, data), (None, vec![0, 255]));
        assert!(tx.query_opt("SELECT k FROM t WHERE k = $1", params![2i64], |r| r.get::<i64>(0)).unwrap().is_none());
        assert!(tx.query_row("SELECT k FROM t WHERE k = $1", params![2i64], |r| r.get::<i64>(0)).is_err());
        let all = tx.query_map("SELECT k FROM t", params![], |r| r.get::<i64>(0)).unwrap();
        assert_eq!(all, vec![1]);
        assert!(tx.execute("INSERT INTO t (k, flag) VALUES ($1)", params![1i64, 2i64]).is_err(), "wrong count");
        let flag: anyhow::Result<bool> = tx.query_value("SELECT 2", params![]);
        assert!(flag.is_err(), "a boolean is 0 or 1");
    }
}
