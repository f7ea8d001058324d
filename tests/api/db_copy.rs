//! `till db copy --to postgres://…` (issue 17): a shop's SQLite books, with
//! payments, refunds, payouts, a reconciliation run, alerts and a staff user
//! in them, moved into an empty PostgreSQL database and verified; then till
//! runs on the copy and keeps paying. Needs `TILL_TEST_POSTGRES_URL` (CI
//! starts a server for both passes of the suite).

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{fresh_postgres_database, spawn_app_with, token_body};

fn till(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_till"));
    cmd.args(["--config", crate::helpers::empty_config()]).args(args).env("TILL_LOG__LEVEL", "error");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn a_shops_sqlite_books_move_to_postgres_verified_and_till_keeps_paying_on_the_copy() {
    let Ok(server) = std::env::var("TILL_TEST_POSTGRES_URL") else {
        eprintln!("db_copy: TILL_TEST_POSTGRES_URL is not set; CI sets it");
        return;
    };
    // The shop on SQLite, whatever engine the rest of the suite runs on.
    let app = spawn_app_with(|s| s.database.url = String::new()).await;
    let paid = app.paid_checkout(&[("seller_a", "40.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    let order = paid["orders"][0]["payment_order_id"].as_str().unwrap();
    let refund: serde_json::Value = app.refund(order, json!({"amount": "5.00"})).await.json().await.unwrap();
    app.wait_refund(refund["refund_id"].as_str().unwrap()).await;
    let token = token_body("pm_card_visa", &[("seller_b", "7.00", "USD")]);
    assert_eq!(app.post_payment(&token).await.status(), StatusCode::CREATED);
    app.wait_until_done(token["checkout_id"].as_str().unwrap()).await;
    let seller = json!({"name": "B", "payout_destination": "acct_seller_b"});
    let put = app.client.put(format!("{}/v1/sellers/seller_b", app.address)).bearer_auth(&app.api_key).json(&seller);
    assert!(put.send().await.unwrap().status().is_success());
    let payout = json!({"seller_id": "seller_b", "currency": "USD", "amount": "3.00"});
    assert_eq!(app.post_json("/v1/payouts", &payout, None).await.status(), StatusCode::CREATED);
    let day = chrono::Utc::now().date_naive();
    till::reconciliation::reconcile_day(&app.ctx, day).await.unwrap();
    crate::admin::create_staff(&app);
    app.ctx.db.write(|tx| till::alerts::raise(tx, "unfinished_order", "copy-test", "an alert to copy")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.assert_ledger_ok();

    let target = fresh_postgres_database(&server);
    let path = app.settings.database.path.to_str().unwrap().to_string();
    let out = till(&["db", "copy", "--to", &target], &[("TILL_DATABASE__PATH", &path)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("verified"), "{stdout}");
    for table in ["payment_orders", "refunds", "payouts", "reconciliation_runs", "alerts", "staff_users"] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("{table}: "))).unwrap_or_else(|| panic!("{table}"));
        assert!(!line.starts_with(&format!("{table}: 0 ")), "{table} was copied with its rows: {line}");
    }
    // A second copy into the same database is refused: it is not empty.
    let again = till(&["db", "copy", "--to", &target], &[("TILL_DATABASE__PATH", &path)]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"), "{again:?}");

    // till on the copy: the books are there, and it keeps taking payments.
    let copy = spawn_app_with(|s| s.database.url = target.clone()).await;
    let before = copy.balance("seller_a").await;
    assert_eq!(before, app.balance("seller_a").await);
    copy.paid_checkout(&[("seller_a", "1.00", "USD")]).await;
    let after: rust_decimal::Decimal = copy.balance("seller_a").await.parse().unwrap();
    assert_eq!(after, before.parse::<rust_decimal::Decimal>().unwrap() + rust_decimal::Decimal::ONE);
    copy.assert_ledger_ok();
}
