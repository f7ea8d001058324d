//! The binary's commands as an operator runs them: `api-key create`,
//! `check` (text and `--json`, exit codes), `migrate`, `backup`; and the
//! database's own refusal to rewrite history.

use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::Value;
use till::config::DatabaseSettings;

use crate::helpers::{OnDatabase, TestApp, spawn_app};

fn till(db: &DatabaseSettings, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_till"))
        .args(args)
        .args(["--config", crate::helpers::empty_config()])
        .on_database(db)
        .env("TILL_LOG__LEVEL", "error")
        .output()
        .unwrap()
}

/// A SQLite database file that is not the running till's.
fn sqlite_file(path: &std::path::Path) -> DatabaseSettings {
    DatabaseSettings { path: path.to_path_buf(), ..DatabaseSettings::default() }
}

/// On PostgreSQL `till backup` refuses and says what to use instead.
fn assert_backup_refused(app: &TestApp, db: &DatabaseSettings) {
    let copy = app.dir.path().join("copy.db");
    let out = till(db, &["backup", copy.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(err.contains("pg_dump") && err.contains("pg_basebackup"), "{err}");
    assert!(!copy.exists());
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn api_key_create_prints_a_working_key_once() {
    let app = spawn_app().await;
    let out = till(&app.settings.database, &["api-key", "create", "--name", "shop backend"]);
    assert!(out.status.success(), "{out:?}");
    let key = stdout(&out).lines().last().unwrap().trim().to_string();
    assert!(key.starts_with("till_sk_"), "{key}");
    let resp = app.client.get(format!("{}/v1/wallets/x", app.address)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "authenticated, and nobody is there");
    let stored: i64 = app.count(&format!("SELECT COUNT(*) FROM api_keys WHERE key_hash LIKE '%{}%'", &key[8..]));
    assert_eq!(stored, 0, "the key itself is not stored");
}

#[tokio::test]
async fn check_passes_on_healthy_books_and_lists_every_violation_otherwise() {
    let app = spawn_app().await;
    let checkout = app.create_hosted(&[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    app.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await;
    let db = app.settings.database.clone();

    let ok = till(&db, &["check"]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(stdout(&ok).contains("ledger OK"));
    let json: Value = serde_json::from_slice(&till(&db, &["check", "--json"]).stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["orders_succeeded"], 2);

    let tampered = if app.is_postgres() {
        // No file to copy: the live books are tampered with, and mended below.
        assert_backup_refused(&app, &db);
        app.execute(WALLET_PLUS_ONE).unwrap();
        app.execute(FORGED_TRANSACTION).unwrap();
        db.clone()
    } else {
        // Tamper with a copy of the books, behind till's back.
        let copy = app.dir.path().join("tampered.db");
        assert!(till(&db, &["backup", copy.to_str().unwrap()]).status.success());
        let conn = rusqlite::Connection::open(&copy).unwrap();
        conn.execute(WALLET_PLUS_ONE, []).unwrap();
        conn.execute(FORGED_TRANSACTION, []).unwrap();
        drop(conn);
        sqlite_file(&copy)
    };
    let broken = till(&tampered, &["check", "--json"]);
    assert_eq!(broken.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&broken.stdout).unwrap();
    let found: Vec<u64> =
        report["violations"].as_array().unwrap().iter().map(|v| v["invariant"].as_u64().unwrap()).collect();
    assert!(found.contains(&1), "the entry-less transaction: {report}");
    assert!(found.contains(&2), "the wallet: {report}");
    assert!(found.contains(&3), "the pay-in of an unknown order: {report}");
    assert!(stdout(&till(&tampered, &["check"])).contains("BROKEN"));
    if app.is_postgres() {
        mend_postgres_books(&app);
    }
}

const WALLET_PLUS_ONE: &str = "UPDATE wallets SET balance_minor = balance_minor + 1 WHERE seller_id = 'seller_a'";
const FORGED_TRANSACTION: &str =
    "INSERT INTO ledger_transactions (source_type, source_id, currency, description, created_at)
         VALUES ('payment_order', 'nope', 'USD', 'forged', 'now')";

/// Undoes the tampering on a live PostgreSQL database, so that the
/// scenario's closing audit checks the rest of the books. The ledger is
/// append-only: its triggers are set aside for this one transaction
/// (`session_replication_role`, which the test server's superuser may set).
fn mend_postgres_books(app: &TestApp) {
    app.execute("UPDATE wallets SET balance_minor = balance_minor - 1 WHERE seller_id = 'seller_a'").unwrap();
    app.ctx
        .db
        .write_now(|tx| {
            tx.execute("SET LOCAL session_replication_role = replica", till::db::params![])?;
            tx.execute("DELETE FROM ledger_transactions WHERE source_id = 'nope'", till::db::params![])
        })
        .unwrap();
}

#[tokio::test]
async fn ledger_entries_cannot_be_changed_or_deleted() {
    let app = spawn_app().await;
    let checkout = app.create_hosted(&[("seller_a", "25.00", "USD")]).await;
    app.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await;
    for sql in [
        "UPDATE ledger_entries SET amount_minor = amount_minor * 2",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transactions SET source_id = 'x'",
        "DELETE FROM ledger_transactions",
        "UPDATE payment_orders SET payment_order_status = 'FAILED'",
    ] {
        let err = format!("{:#}", app.execute(sql).unwrap_err());
        assert!(err.contains("append-only") || err.contains("final state"), "{sql}: {err}");
    }
}

#[tokio::test]
async fn migrate_and_backup_work_on_a_live_database() {
    let app = spawn_app().await;
    app.create_hosted(&[("seller_a", "1.00", "USD")]).await;
    let db = app.settings.database.clone();
    assert!(till(&db, &["migrate"]).status.success());
    if app.is_postgres() {
        assert_backup_refused(&app, &db);
        return;
    }
    let copy = app.dir.path().join("backup.db");
    let out = till(&db, &["backup", copy.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let copied = rusqlite::Connection::open(&copy).unwrap();
    let orders: i64 = copied.query_row("SELECT COUNT(*) FROM payment_orders", [], |r| r.get(0)).unwrap();
    assert_eq!(orders, 1);
    assert!(!till(&db, &["backup", copy.to_str().unwrap()]).status.success(), "never overwrites");
}

#[test]
fn a_bad_configuration_is_refused_with_the_key_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_till"))
        .args(["check", "--config", crate::helpers::empty_config()])
        .env("TILL_SANDBOX__FAULTS__ERROR_RATE", "7")
        .env("TILL_SERVER__BIND", "nowhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sandbox.faults.error_rate") && err.contains("server.bind"), "{err}");
}

#[tokio::test]
async fn a_revoked_key_is_refused_and_listed_as_revoked() {
    let app = spawn_app().await;
    let db = app.settings.database.clone();
    let out = till(&db, &["api-key", "create", "--name", "old shop"]);
    let key = stdout(&out).lines().last().unwrap().trim().to_string();
    let id = stdout(&out).split_whitespace().find(|w| w.starts_with("key_")).unwrap().to_string();
    let listed = stdout(&till(&db, &["api-key", "list"]));
    assert!(listed.contains(&id) && listed.contains("old shop") && !listed.contains(&key), "{listed}");
    assert!(till(&db, &["api-key", "revoke", &id]).status.success());
    assert_eq!(till(&db, &["api-key", "revoke", &id]).status.code(), Some(1), "only once");
    assert!(stdout(&till(&db, &["api-key", "list"])).contains("revoked"));
    let resp = app.client.get(format!("{}/v1/alerts", app.address)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}
