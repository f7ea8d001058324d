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
}
