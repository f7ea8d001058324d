//! Pay-outs: on demand and scheduled, a failing destination (money back,
//! booked once each way), more than available, holds, one Idempotency-Key,
//! and a crash between storing a payout and sending it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use till::ledger;
use till::money::Currency;

use crate::helpers::{Receiver, TestApp, spawn_app_with};

async fn app_with(configure: impl FnOnce(&mut till::config::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.queue.backoff_base_ms = 20;
        s.queue.backoff_cap_ms = 200;
        s.queue.max_attempts = 100;
        configure(s);
    })
    .await
}

async fn seller(app: &TestApp, id: &str, destination: &str) {
    let resp = app
        .client
        .put(format!("{}/v1/sellers/{id}", app.address))
        .bearer_auth(&app.api_key)
        .json(&json!({"name": format!("Seller {id}"), "payout_destination": destination}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
}

async fn payout(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let resp = app.post_json("/v1/payouts", &body, None).await;
    (resp.status(), resp.json().await.unwrap())
}

async fn wait_payout(app: &TestApp, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let p = app.get_json(&format!("/v1/payouts/{id}")).await;
        if p["status"] == "PAID" || p["status"] == "FAILED" {
            return p;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "payout never finished: {p}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn balance(app: &TestApp, account: &str) -> i64 {
    app.ctx.db.read_now(|tx| ledger::account_balance(tx, account, Currency::parse("USD").unwrap())).unwrap()
}

#[tokio::test]
async fn a_seller_is_paid_out_on_demand() {
    let app = app_with(|_| {}).await;
    app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    seller(&app, "seller_a", "acct_seller_a").await;
    assert_eq!(app.get_json("/v1/sellers/seller_a").await["payout_destination"], "acct_seller_a");

    let (status, p) = payout(&app, json!({"seller_id": "seller_a", "currency": "USD", "amount": "10.00"})).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    assert_eq!((p["status"].as_str(), p["destination"].as_str()), (Some("PENDING"), Some("acct_seller_a")));
    assert_eq!(app.balance("seller_a").await, "15.00", "the wallet moves when the payout is stored");
    let p = wait_payout(&app, p["payout_id"].as_str().unwrap()).await;
    assert_eq!(p["status"], "PAID");
    assert_eq!(balance(&app, ledger::PAYOUTS_IN_TRANSIT), 0);
    assert_eq!(balance(&app, ledger::PSP_BALANCE), 1500);

    // No amount: all that is available.
    let (_, all) = payout(&app, json!({"seller_id": "seller_a", "currency": "USD"})).await;
    assert_eq!(all["amount"], "15.00");
    wait_payout(&app, all["payout_id"].as_str().unwrap()).await;
    assert_eq!(app.balance("seller_a").await, "0.00");
    let listed = app.get_json("/v1/payouts?seller_id=seller_a&status=PAID").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions WHERE source_type = 'payout_paid'"), 2);
}

#[tokio::test]
async fn a_failing_destination_gives_the_money_back_once() {
    let app = app_with(|_| {}).await;
    let receiver = Receiver::spawn(0).await;
    app.post_json(
        "/v1/webhook_endpoints",
        &json!({"url": receiver.url, "enabled_events": ["payout.paid", "payout.failed"]}),
        None,
    )
    .await;
    app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    seller(&app, "seller_a", "acct_fail_closed").await;
    let (_, p) = payout(&app, json!({"seller_id": "seller_a", "currency": "USD"})).await;
    assert_eq!(app.balance("seller_a").await, "0.00");
    let p = wait_payout(&app, p["payout_id"].as_str().unwrap()).await;
    assert_eq!(p["status"], "FAILED");
    assert!(p["failure_code"].is_string());
    assert_eq!(app.balance("seller_a").await, "25.00", "the money is back");
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions WHERE source_type = 'payout'"), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions WHERE source_type = 'payout_reversal'"), 1);
    assert_eq!(balance(&app, ledger::PAYOUTS_IN_TRANSIT), 0);
    let got = receiver.wait_for("payout.failed", |r| !r.is_empty()).await;
    assert_eq!(got[0].json()["type"], "payout.failed");
}

#[tokio::test]
async fn more_than_available_and_bad_requests_are_refused_moving_nothing() {
    let app = app_with(|s| {
        s.payouts.minimum_amount.insert("USD".into(), "5.00".into());
    })
    .await;
    app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    seller(&app, "seller_a", "acct_a").await;
    seller(&app, "seller_x", "acct_x").await;
    let no_dest = app
        .client
        .put(format!("{}/v1/sellers/seller_n", app.address))
        .bearer_auth(&app.api_key)
        .json(&json!({"name": "No destination", "payout_destination": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_dest.status(), StatusCode::CREATED);
    for (body, code) in [
        (json!({"seller_id": "seller_a", "currency": "USD", "amount": "25.01"}), "amount_exceeds_available"),
        (json!({"seller_id": "seller_a", "currency": "USD", "amount": "4.99"}), "amount_below_minimum"),
        (json!({"seller_id": "seller_a", "currency": "USD", "amount": "1.001"}), "amount_invalid"),
        (json!({"seller_id": "seller_a", "currency": "usd"}), "currency_invalid"),
        (json!({"seller_id": "seller_a", "currency": "EUR"}), "amount_exceeds_available"),
        (json!({"seller_id": "seller_x", "currency": "USD"}), "amount_exceeds_available"),
        (json!({"seller_id": "nobody", "currency": "USD"}), "seller_missing"),
        (json!({"seller_id": "seller_n", "currency": "USD"}), "payout_destination_missing"),
    ] {
        let (status, err) = payout(&app, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err["error"]["code"], code, "{body}: {err}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payouts"), 0);
    assert_eq!(app.balance("seller_a").await, "25.00");
    let bad = app
        .client
        .put(format!("{}/v1/sellers/seller_a", app.address))
        .bearer_auth(&app.api_key)
        .json(&json!({"name": "A", "payout_destination": "iban_123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn held_money_is_pending_and_not_paid_out() {
    let app = app_with(|s| s.payouts.hold_days = 7).await;
    app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    seller(&app, "seller_a", "acct_a").await;
    let wallet = app.get_json("/v1/wallets/seller_a").await;
    assert_eq!(
        wallet["balances"][0],
        json!({"currency": "USD", "balance": "25.00", "available": "0.00", "pending": "25.00", "debt": "0.00",
               "authorized": "0.00"})
    );
    let (status, err) = payout(&app, json!({"seller_id": "seller_a", "currency": "USD"})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("amount_exceeds_available")));
    assert_eq!(till::payouts::pay_out_all(&app.ctx).await.unwrap(), 0, "the schedule leaves held money alone");
    // Seven days later the money is available.
    app.execute("UPDATE payment_orders SET succeeded_at = '2000-01-01T00:00:00.000Z'").unwrap();
    assert_eq!(app.get_json("/v1/wallets/seller_a").await["balances"][0]["available"], "25.00");
    assert_eq!(till::payouts::pay_out_all(&app.ctx).await.unwrap(), 1);
}

#[tokio::test]
async fn scheduled_payouts_pay_every_seller_above_the_minimum() {
    let app = app_with(|s| {
        s.payouts.minimum_amount.insert("USD".into(), "10.00".into());
        s.payouts.schedule = "* * * * * *".into();
    })
    .await;
    seller(&app, "seller_a", "acct_a").await;
    seller(&app, "seller_b", "acct_b").await;
    app.paid_checkout(&[("seller_a", "25.00", "USD"), ("seller_b", "5.00", "USD")]).await;
    let started = Instant::now();
    while app.count("SELECT COUNT(*) FROM payouts WHERE status = 'PAID'") == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the schedule never paid out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.balance("seller_a").await, "0.00");
    assert_eq!(app.balance("seller_b").await, "5.00", "below the minimum");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM payouts"), 1, "nothing left to pay out");
}

#[tokio::test]
async fn one_idempotency_key_makes_one_payout() {
    let app = app_with(|_| {}).await;
    app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    seller(&app, "seller_a", "acct_a").await;
    let body = json!({"seller_id": "seller_a", "currency": "USD", "amount": "10.00"});
    let first = app.post_json("/v1/payouts", &body, Some("payout-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    for _ in 0..3 {
        let again = app.post_json("/v1/payouts", &body, Some("payout-1")).await;
        assert_eq!(again.headers()["Idempotent-Replayed"], "true");
        assert_eq!(again.json::<Value>().await.unwrap()["payout_id"], first["payout_id"]);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payouts"), 1);
    assert_eq!(app.balance("seller_a").await, "15.00");
}

#[tokio::test]
async fn a_refund_after_a_payout_respects_the_sellers_balance() {
    let app = app_with(|_| {}).await;
    let done = app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    seller(&app, "seller_a", "acct_a").await;
    let (_, p) = payout(&app, json!({"seller_id": "seller_a", "currency": "USD"})).await;
    wait_payout(&app, p["payout_id"].as_str().unwrap()).await;
    let order_id = done["orders"][0]["payment_order_id"].as_str().unwrap();
    let resp = app.refund(order_id, json!({"amount": "10.00"})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "insufficient_seller_balance");
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds"), 0);
}

#[tokio::test]
async fn with_seller_debt_allowed_the_refund_goes_through() {
    let app = app_with(|s| s.refunds.allow_seller_debt = true).await;
    let done = app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    seller(&app, "seller_a", "acct_a").await;
    let (_, p) = payout(&app, json!({"seller_id": "seller_a", "currency": "USD"})).await;
    wait_payout(&app, p["payout_id"].as_str().unwrap()).await;
    let r: Value = app
        .refund(done["orders"][0]["payment_order_id"].as_str().unwrap(), json!({"amount": "10.00"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.wait_refund(r["refund_id"].as_str().unwrap()).await["status"], "SUCCEEDED");
    assert_eq!(app.balance("seller_a").await, "-10.00");
    let report = app
        .ctx
        .db
        .read_snapshot(|tx| {
            till::ledger::check::run_with(tx, &till::ledger::check::Options { allow_seller_debt: true, hold_days: 0 })
        })
        .unwrap();
    assert!(report.ok, "{}", report.summary());
    // Under a no-debt configuration the same books are a violation.
    let strict = app.ctx.db.read_snapshot(till::ledger::check::run).unwrap();
    assert!(strict.violations.iter().any(|v| v.invariant == 4), "{}", strict.summary());
    // Put the seller back in credit so the scenario's closing check passes.
    app.paid_checkout(&[("seller_a", "10.00", "USD")]).await;
}
