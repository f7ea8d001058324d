//! What an engine's error means, for the few callers that must tell one
//! failure from another. Only this file looks inside the engine's errors.

/// Whether `e` (from a statement run through [`super::Tx`]) failed because
/// a UNIQUE or PRIMARY KEY constraint refused the row: an insert of
/// something that exists already. The engine's error may sit under any
/// number of `.context(…)` layers.
pub fn is_unique_violation(e: &anyhow::Error) -> bool {
    use rusqlite::ffi;
    e.chain().any(|cause| {
        let sqlite =
            cause.downcast_ref::<rusqlite::Error>().and_then(rusqlite::Error::sqlite_error).is_some_and(|err| {
                matches!(err.extended_code, ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
            });
        // PostgreSQL reports both as SQLSTATE 23505.
        let postgres = cause
            .downcast_ref::<postgres::Error>()
            .and_then(postgres::Error::code)
            .is_some_and(|code| *code == postgres::error::SqlState::UNIQUE_VIOLATION);
        sqlite || postgres
    })
}

/// A write that failed for want of storage, named by the group-commit
/// writer, which answers many callers from one failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

/// Whether `e` says the storage under the database is in trouble rather
/// than the statement being wrong: the disk is full, the database (file,
/// file system or server) is read-only, or the disk failed. SQLite:
/// SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR (and their extended codes);
/// PostgreSQL: SQLSTATE 53100 disk_full, 25006 read_only_sql_transaction
/// (a standby after a failover), 58030 io_error. Such a write may succeed
/// later: the API answers 503 storage_unavailable with Retry-After.
pub fn is_storage_trouble(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<StorageError>()
            || cause.downcast_ref::<rusqlite::Error>().is_some_and(is_sqlite_storage_error)
            || cause.downcast_ref::<postgres::Error>().is_some_and(is_pg_storage_error)
    })
}

pub(crate) fn is_sqlite_storage_error(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    e.sqlite_error_code()
        .is_some_and(|code| matches!(code, ErrorCode::DiskFull | ErrorCode::ReadOnly | ErrorCode::SystemIoFailure))
}

pub(crate) fn is_pg_storage_error(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::DISK_FULL || *c == SqlState::READ_ONLY_SQL_TRANSACTION || *c == SqlState::IO_ERROR
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Tx, params};

    #[test]
    fn a_taken_key_is_a_unique_violation_and_other_failures_are_not() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (k INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER NOT NULL CHECK (n > 0))",
        )
        .unwrap();
        let tx = Tx::sqlite(&conn);
        tx.execute("INSERT INTO t (k, name, n) VALUES ($1, $2, $3)", params![1i64, "a", 1i64]).unwrap();
        let taken_name = tx.execute("INSERT INTO t (k, name, n) VALUES ($1, $2, $3)", params![2i64, "a", 1i64]);
        let taken_key = tx.execute("INSERT INTO t (k, name, n) VALUES ($1, $2, $3)", params![1i64, "b", 1i64]);
        let text_only = anyhow::anyhow!("{:#}", taken_name.as_ref().unwrap_err());
        assert!(is_unique_violation(&taken_name.unwrap_err().context("creating a thing")));
        assert!(is_unique_violation(&taken_key.unwrap_err()));
        let checked = tx.execute("INSERT INTO t (k, name, n) VALUES ($1, $2, $3)", params![3i64, "c", 0i64]);
        assert!(!is_unique_violation(&checked.unwrap_err()), "a CHECK failure is another thing");
        assert!(!is_unique_violation(&anyhow::anyhow!("no engine here")));
        assert!(!is_unique_violation(&text_only), "only the error itself tells, not its text");
    }

    #[test]
    fn full_read_only_and_failing_storage_is_storage_trouble_and_a_bad_statement_is_not() {
        use rusqlite::ffi;
        let sqlite = |code| anyhow::Error::new(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None));
        for code in [ffi::SQLITE_FULL, ffi::SQLITE_READONLY, ffi::SQLITE_IOERR, ffi::SQLITE_IOERR_WRITE] {
            assert!(is_storage_trouble(&sqlite(code).context("committing")), "{code}");
        }
        for code in [ffi::SQLITE_CONSTRAINT_UNIQUE, ffi::SQLITE_ERROR, ffi::SQLITE_BUSY] {
            assert!(!is_storage_trouble(&sqlite(code)), "{code}");
        }
        assert!(is_storage_trouble(&anyhow::Error::new(StorageError("the transaction ended early".into()))));
        assert!(!is_storage_trouble(&anyhow::anyhow!("database or disk is full")), "the type tells, not the text");
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let tx = Tx::sqlite(&conn);
        let bad = tx.execute("INSERT INTO nowhere VALUES (1)", params![]).unwrap_err();
        assert!(!is_storage_trouble(&bad));
    }
}
