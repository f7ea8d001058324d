//! Refunds: partial and full, never more than was paid (also under
//! concurrency), the PSP failing one (money back, booked once each way).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with, token_body};

async fn fast_app() -> TestApp {
    spawn_app_with(|s| {
        s.queue.backoff_base_ms = 20;
        s.queue.backoff_cap_ms = 200;
        s.queue.max_attempts = 100;
    })
    .await
}

#[tokio::test]
async fn partial_then_full_refunds_move_the_wallet_and_the_ledger() {
    let app = fast_app().await;
    let done = app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    let order_id = done["orders"][0]["payment_order_id"].as_str().unwrap();

    let resp = app.refund(order_id, json!({"amount": "10.00", "reason": "damaged"})).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let refund: Value = resp.json().await.unwrap();
    assert_eq!((refund["status"].as_str(), refund["amount"].as_str()), (Some("PENDING"), Some("10.00")));
    assert_eq!(app.balance("seller_a").await, "15.00", "the wallet moves when the refund is created");
    let refund = app.wait_refund(refund["refund_id"].as_str().unwrap()).await;
    assert_eq!(refund["status"], "SUCCEEDED");
    assert_eq!(refund["reason"], "damaged");

    // No amount: the rest of the order.
    let rest: Value = app.refund(order_id, json!({})).await.json().await.unwrap();
    assert_eq!(rest["amount"], "15.00");
    assert_eq!(app.wait_refund(rest["refund_id"].as_str().unwrap()).await["status"], "SUCCEEDED");
    assert_eq!(app.balance("seller_a").await, "0.00");
    let order = app.get_json(&format!("/v1/payments/{order_id}")).await;
    assert_eq!((order["status"].as_str(), order["refunded_amount"].as_str()), (Some("SUCCESS"), Some("25.00")));
    let listed = app.get_json(&format!("/v1/payments/{order_id}/refunds")).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let usd = till::money::Currency::parse("USD").unwrap();
    let balance = |account: &str| app.ctx.db.read_now(|tx| till::ledger::account_balance(tx, account, usd)).unwrap();
    assert_eq!(balance(till::ledger::PSP_BALANCE), 0);
    let again = app.refund(order_id, json!({"amount": "0.01"})).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_over_refund_is_refused_and_moves_nothing() {
    let app = fast_app().await;
    let done = app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    let order_id = done["orders"][0]["payment_order_id"].as_str().unwrap();
    for (body, code) in [
        (json!({"amount": "25.01"}), "refund_exceeds_order"),
        (json!({"amount": "1.001"}), "amount_invalid"),
        (json!({"amount": "-1.00"}), "amount_invalid"),
        (json!({"amount": 5}), "amount_invalid"),
        (json!({"amount": "1.00", "extra": 1}), "parameter_invalid"),
        (json!({"reason": "x".repeat(501)}), "parameter_invalid"),
    ] {
        let resp = app.refund(order_id, body.clone()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], code, "{body}: {err}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds"), 0);
    assert_eq!(app.balance("seller_a").await, "25.00");
    assert_eq!(app.refund(&crate::helpers::uuid(), json!({})).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn eight_concurrent_refunds_of_ten_on_twenty_five_accept_exactly_two() {
    let app = fast_app().await;
    let done = app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    let order_id = done["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    let responses =
        futures_util::future::join_all((0..8).map(|_| app.refund(&order_id, json!({"amount": "10.00"})))).await;
    let accepted: Vec<Value> = {
        let mut v = Vec::new();
        for r in responses {
            match r.status() {
                StatusCode::CREATED => v.push(r.json().await.unwrap()),
                StatusCode::BAD_REQUEST => {
                    let err: Value = r.json().await.unwrap();
                    assert_eq!(err["error"]["code"], "refund_exceeds_order");
                }
                other => panic!("unexpected {other}"),
            }
        }
        v
    };
    assert_eq!(accepted.len(), 2);
    for r in &accepted {
        assert_eq!(app.wait_refund(r["refund_id"].as_str().unwrap()).await["status"], "SUCCEEDED");
    }
    assert_eq!(app.balance("seller_a").await, "5.00");
    assert_eq!(app.get_json(&format!("/v1/payments/{order_id}")).await["refunded_amount"], "20.00");
}

#[tokio::test]
async fn a_refund_the_psp_fails_gives_the_money_back_once() {
    let app = fast_app().await;
    let done = app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    let order_id = done["orders"][0]["payment_order_id"].as_str().unwrap();
    // The sandbox fails a refund of exactly 0.13.
    let refund: Value = app.refund(order_id, json!({"amount": "0.13"})).await.json().await.unwrap();
    assert_eq!(app.balance("seller_a").await, "24.87");
    let refund = app.wait_refund(refund["refund_id"].as_str().unwrap()).await;
    assert_eq!(refund["status"], "FAILED");
    assert!(refund["failure_code"].as_str().is_some());
    assert_eq!(app.balance("seller_a").await, "25.00", "the money is back");
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions WHERE source_type = 'refund_reversal'"), 1);
    assert_eq!(app.get_json(&format!("/v1/payments/{order_id}")).await["refunded_amount"], "0.00");
    // The whole amount is refundable again.
    let full: Value = app.refund(order_id, json!({})).await.json().await.unwrap();
    assert_eq!(full["amount"], "25.00");
    assert_eq!(app.wait_refund(full["refund_id"].as_str().unwrap()).await["status"], "SUCCEEDED");
}

#[tokio::test]
async fn only_successful_orders_are_refundable_and_token_orders_refund_too() {
    let app = fast_app().await;
    let open = app.create_hosted(&[("seller_a", "5.00", "USD")]).await;
    let resp = app.refund(open["orders"][0]["payment_order_id"].as_str().unwrap(), json!({})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "order_not_refundable");

    let created: Value = app
        .post_payment(&token_body("pm_card_visa", &[("seller_b", "1000", "JPY"), ("seller_c", "7.50", "EUR")]))
        .await
        .json()
        .await
        .unwrap();
    let done = app.wait_until_done(created["checkout_id"].as_str().unwrap()).await;
    let jpy = done["orders"][0]["payment_order_id"].as_str().unwrap();
    let r: Value = app.refund(jpy, json!({"amount": "400"})).await.json().await.unwrap();
    assert_eq!(app.wait_refund(r["refund_id"].as_str().unwrap()).await["status"], "SUCCEEDED");
    assert_eq!(app.balance("seller_b").await, "600");
    let bad = app.refund(jpy, json!({"amount": "1.5"})).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST, "JPY has no decimals");
}

#[tokio::test]
async fn the_refund_is_split_with_the_commission() {
    let app = spawn_app_with(|s| {
        s.fees.commission_percent = "10".parse().unwrap();
        s.queue.backoff_base_ms = 20;
        s.queue.backoff_cap_ms = 200;
    })
    .await;
    let done = app.paid_checkout(&[("seller_a", "10.05", "USD")]).await;
    let order_id = done["orders"][0]["payment_order_id"].as_str().unwrap();
    assert_eq!(app.balance("seller_a").await, "9.04");
    for _ in 0..3 {
        let r: Value = app.refund(order_id, json!({"amount": "3.35"})).await.json().await.unwrap();
        app.wait_refund(r["refund_id"].as_str().unwrap()).await;
    }
    assert_eq!(app.balance("seller_a").await, "0.00", "the seller gives back exactly what it got");
    let usd = till::money::Currency::parse("USD").unwrap();
    let balance = |account: &str| app.ctx.db.read_now(|tx| till::ledger::account_balance(tx, account, usd)).unwrap();
    assert_eq!(balance(till::ledger::COMMISSION), 0);
}

#[tokio::test]
async fn merchant_is_told_of_refunds() {
    let app = fast_app().await;
    let receiver = crate::helpers::Receiver::spawn(0).await;
    app.post_json(
        "/v1/webhook_endpoints",
        &json!({"url": receiver.url, "enabled_events": ["refund.succeeded", "refund.failed"]}),
        None,
    )
    .await;
    let done = app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    let order_id = done["orders"][0]["payment_order_id"].as_str().unwrap();
    app.refund(order_id, json!({"amount": "1.00"})).await;
    app.refund(order_id, json!({"amount": "0.13"})).await;
    let got = receiver.wait_for("two refund events", |r| r.len() >= 2).await;
    let mut types: Vec<String> = got.iter().map(|r| r.json()["type"].as_str().unwrap().to_string()).collect();
    types.sort();
    assert_eq!(types, ["refund.failed", "refund.succeeded"]);
}

#[tokio::test]
async fn a_plain_app_refunds_too() {
    // Default queue settings: the PSP's refund.updated event finishes the refund.
    let app = spawn_app().await;
    let done = app.paid_checkout(&[("seller_a", "2.00", "USD")]).await;
    let r: Value =
        app.refund(done["orders"][0]["payment_order_id"].as_str().unwrap(), json!({})).await.json().await.unwrap();
    assert_eq!(app.wait_refund(r["refund_id"].as_str().unwrap()).await["status"], "SUCCEEDED");
}
