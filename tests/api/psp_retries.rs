//! Issue 14: a PSP that fails, times out after doing the work, loses its
//! webhooks or rejects till's request never costs a buyer a sale nor
//! charges anyone twice; a shop asks the PSP now (`sync`) and cancels.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, hosted_body, session_id_of, spawn_app_with, token_body, uuid};

/// A till whose PSP calls time out quickly and whose jobs retry fast.
async fn impatient_app(configure: impl FnOnce(&mut till::config::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.psp.request_timeout_ms = 400;
        s.queue.lease_ms = 2_000;
        s.webhooks.timeout_ms = 1_000;
        s.queue.backoff_base_ms = 20;
        s.queue.backoff_cap_ms = 300;
        s.queue.max_attempts = 60;
        configure(s);
    })
    .await
}

/// What a shop following Stripe's advice does: the same body again on a 5xx.
async fn post_until_answered(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    for _ in 0..60 {
        let resp = app.post_payment(body).await;
        let status = resp.status();
        if !status.is_server_error() {
            return (status, resp.json().await.unwrap());
        }
    }
    panic!("POST /v1/payments never answered");
}

fn psp(app: &TestApp) -> rusqlite::Connection {
    rusqlite::Connection::open(&app.settings.sandbox.database_path).unwrap()
}

#[tokio::test]
async fn hosted_checkouts_created_through_a_faulty_psp_all_end_payable_and_none_fails() {
    let app = impatient_app(|s| s.sandbox.faults.seed = 11).await;
    app.set_faults(json!({"error_rate": 0.2, "timeout_rate": 0.1, "seed": 11})).await;
    let mut checkouts = Vec::new();
    for _ in 0..36 {
        let body = hosted_body(&[("seller_a", "12.00", "USD"), ("seller_b", "3.50", "USD")]);
        let (status, checkout) = post_until_answered(&app, &body).await;
        assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status}: {checkout}");
        for order in checkout["orders"].as_array().unwrap() {
            assert_eq!(order["status"], "EXECUTING", "{checkout}");
        }
        checkouts.push(checkout);
    }
    let unknown = app.count("SELECT COUNT(*) FROM psp_calls WHERE outcome LIKE '%unknown%'");
    assert!(unknown > 0, "the faults were exercised");
    app.set_faults(json!({"error_rate": 0.0, "timeout_rate": 0.0})).await;
    for checkout in &checkouts {
        let paid = app.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
        assert_eq!(paid.status(), StatusCode::SEE_OTHER, "each redirect_url is payable");
    }
    for checkout in &checkouts {
        let done = app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await;
        assert!(done["orders"].as_array().unwrap().iter().all(|o| o["status"] == "SUCCESS"), "{done}");
    }
    let sessions: i64 = psp(&app).query_row("SELECT COUNT(*) FROM checkout_sessions", [], |r| r.get(0)).unwrap();
    assert_eq!(sessions, 36, "one session per checkout, however often it was asked for");
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_orders WHERE payment_order_status = 'FAILED'"), 0);
}

#[tokio::test]
async fn refunds_and_payouts_sent_through_work_then_timeout_complete_once() {
    let app = impatient_app(|_| {}).await;
    let body = token_body("pm_card_visa", &[("seller_a", "50.00", "USD")]);
    assert_eq!(app.post_payment(&body).await.status(), StatusCode::CREATED);
    let done = app.wait_until_done(body["checkout_id"].as_str().unwrap()).await;
    let order_id = done["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    let seller = json!({"name": "A", "payout_destination": "acct_seller_a"});
    let put = app.client.put(format!("{}/v1/sellers/seller_a", app.address)).bearer_auth(&app.api_key).json(&seller);
    assert!(put.send().await.unwrap().status().is_success());

    app.set_faults(json!({"timeout_rate": 0.5, "seed": 5})).await;
    let mut refunds = Vec::new();
    for _ in 0..4 {
        let resp = app.refund(&order_id, json!({"amount": "5.00"})).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        refunds.push(resp.json::<Value>().await.unwrap()["refund_id"].as_str().unwrap().to_string());
    }
    let mut payouts = Vec::new();
    for _ in 0..3 {
        let resp = app
            .post_json("/v1/payouts", &json!({"seller_id": "seller_a", "currency": "USD", "amount": "5.00"}), None)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        payouts.push(resp.json::<Value>().await.unwrap()["payout_id"].as_str().unwrap().to_string());
    }
    for id in &refunds {
        assert_eq!(app.wait_refund(id).await["status"], "SUCCEEDED");
    }
    for id in &payouts {
        let mut payout = app.get_json(&format!("/v1/payouts/{id}")).await;
        for _ in 0..800 {
            if payout["status"] == "PAID" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            payout = app.get_json(&format!("/v1/payouts/{id}")).await;
        }
        assert_eq!(payout["status"], "PAID", "{payout}");
    }
    let psp = psp(&app);
    let count = |sql: &str| -> i64 { psp.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM refunds"), 4, "each refund made once at the PSP");
    assert_eq!(count("SELECT COUNT(*) FROM transfers"), 3, "each payout sent once");
    assert!(app.count("SELECT COUNT(*) FROM psp_calls WHERE outcome LIKE '%unknown%'") > 0, "timeouts happened");
    assert_eq!(app.balance("seller_a").await, "15.00");
}

/// A session or a charge created at the PSP with till's idempotency key but
/// other parameters: the PSP rejects till's request. Nothing is known of
/// the buyer's payment, so nothing fails: a person is told.
#[tokio::test]
async fn a_request_the_psp_rejects_never_fails_an_order() {
    let app = impatient_app(|s| s.queue.max_attempts = 3).await;
    let body = hosted_body(&[("seller_a", "20.00", "USD")]);
    let checkout_id = body["checkout_id"].as_str().unwrap();
    let squatted = app
        .client
        .post(format!("{}/v1/checkout/sessions", app.sandbox))
        .bearer_auth(&app.settings.psp.secret_key)
        .header("Idempotency-Key", format!("checkout-{checkout_id}"))
        .form(&[
            ("mode", "payment"),
            ("success_url", "https://elsewhere.example/ok"),
            ("cancel_url", "https://elsewhere.example/no"),
            ("line_items[0][price_data][currency]", "usd"),
            ("line_items[0][price_data][unit_amount]", "100"),
            ("line_items[0][price_data][product_data][name]", "x"),
            ("line_items[0][quantity]", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(squatted.status(), StatusCode::OK);
    let resp = app.post_payment(&body).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "psp_refused", "{err}");
    let checkout = app.get_json(&format!("/v1/checkouts/{checkout_id}")).await;
    assert_eq!(checkout["orders"][0]["status"], "NOT_STARTED", "not failed: {checkout}");
    assert_eq!(app.count("SELECT COUNT(*) FROM alerts WHERE kind = 'psp_request_refused' AND status = 'open'"), 1);

    // A token charge whose key was used with another amount.
    let body = token_body("pm_card_visa", &[("seller_a", "20.00", "USD")]);
    let order_id = body["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    let other = app
        .client
        .post(format!("{}/v1/payment_intents", app.sandbox))
        .bearer_auth(&app.settings.psp.secret_key)
        .header("Idempotency-Key", &order_id)
        .form(&[
            ("amount", "999"),
            ("currency", "usd"),
            ("payment_method", "pm_card_visa"),
            ("payment_method_types[]", "card"),
            ("confirm", "true"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(app.post_payment(&body).await.status(), StatusCode::CREATED);
    for _ in 0..400 {
        if app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'charge_order' AND status = 'dead'") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'charge_order' AND status = 'dead'"), 1);
    let order = app.get_json(&format!("/v1/payments/{order_id}")).await;
    assert_eq!(order["status"], "EXECUTING", "unknown, not failed: {order}");
    assert_eq!(app.count("SELECT COUNT(*) FROM alerts WHERE kind = 'dead_letter' AND status = 'open'"), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_orders WHERE payment_order_status = 'FAILED'"), 0);
}

#[tokio::test]
async fn a_paid_checkout_whose_webhooks_are_lost_is_success_right_after_sync() {
    let app = spawn_app_with(|_| {}).await;
    app.set_faults(json!({"webhook_drop_rate": 1.0})).await;
    let checkout = app.create_hosted(&[("seller_a", "25.00", "USD")]).await;
    let checkout_id = checkout["checkout_id"].as_str().unwrap();
    let paid = app.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get_json(&format!("/v1/checkouts/{checkout_id}")).await["orders"][0]["status"], "EXECUTING");
    let synced = app.post_json(&format!("/v1/checkouts/{checkout_id}/sync"), &json!({}), None).await;
    assert_eq!(synced.status(), StatusCode::OK);
    let synced: Value = synced.json().await.unwrap();
    assert_eq!(synced["orders"][0]["status"], "SUCCESS", "{synced}");
    assert_eq!(synced["is_payment_done"], true);
    // Again: nothing more happens.
    let again = app.post_json(&format!("/v1/checkouts/{checkout_id}/sync"), &json!({}), None).await;
    assert_eq!(again.json::<Value>().await.unwrap()["orders"], synced["orders"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions"), 1);
    assert_eq!(app.post_json(&format!("/v1/checkouts/{}/sync", uuid()), &json!({}), None).await.status(), 404);
}

#[tokio::test]
async fn a_paid_checkout_whose_webhooks_are_lost_succeeds_within_the_sync_period_without_it() {
    let app = spawn_app_with(|s| s.payments.sync_every_seconds = 1).await;
    app.set_faults(json!({"webhook_drop_rate": 1.0})).await;
    let checkout = app.create_hosted(&[("seller_a", "25.00", "USD")]).await;
    let paid = app.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    let done = app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await;
    assert_eq!(done["orders"][0]["status"], "SUCCESS");
    let attempts = app.count("SELECT MAX(attempts) FROM jobs WHERE kind = 'sync_checkout'");
    assert!(attempts <= 1, "asking about an open session spends no attempt ({attempts})");
}

#[tokio::test]
async fn a_checkout_whose_session_was_never_answered_is_registered_by_sync() {
    let app = impatient_app(|_| {}).await;
    app.set_faults(json!({"error_rate": 1.0})).await;
    let body = hosted_body(&[("seller_a", "25.00", "USD")]);
    assert_eq!(app.post_payment(&body).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    app.set_faults(json!({"error_rate": 0.0})).await;
    let checkout_id = body["checkout_id"].as_str().unwrap();
    let synced = app.post_json(&format!("/v1/checkouts/{checkout_id}/sync"), &json!({}), None).await;
    let synced: Value = synced.json().await.unwrap();
    assert_eq!(synced["orders"][0]["status"], "EXECUTING", "{synced}");
    let url = synced["redirect_url"].as_str().unwrap();
    assert_eq!(app.pay(url, "4242424242424242").await.status(), StatusCode::SEE_OTHER);
    app.wait_until_done(checkout_id).await;
}

#[tokio::test]
async fn a_canceled_checkout_cannot_be_paid_and_a_paid_one_cannot_be_canceled() {
    let app = spawn_app_with(|_| {}).await;
    let checkout = app.create_hosted(&[("seller_a", "25.00", "USD"), ("seller_b", "5.00", "USD")]).await;
    let checkout_id = checkout["checkout_id"].as_str().unwrap();
    let url = checkout["redirect_url"].as_str().unwrap();
    let app = &app;
    let cancel =
        |id: String| async move { app.post_json(&format!("/v1/checkouts/{id}/cancel"), &json!({}), None).await };
    let canceled = cancel(checkout_id.to_string()).await;
    assert_eq!(canceled.status(), StatusCode::OK);
    let canceled: Value = canceled.json().await.unwrap();
    for order in canceled["orders"].as_array().unwrap() {
        assert_eq!((order["status"].as_str(), order["failure_code"].as_str()), (Some("FAILED"), Some("canceled")));
    }
    let session = app.sandbox_get(&format!("/v1/checkout/sessions/{}", session_id_of(url))).await;
    assert_eq!(session["status"], "expired", "expired at the PSP: {session}");
    let card = [("card_number", "4242424242424242"), ("exp_month", "12"), ("exp_year", "2034"), ("cvc", "123")];
    let tried = app.client.post(url).form(&card).send().await.unwrap();
    assert_ne!(tried.status(), StatusCode::SEE_OTHER, "nobody can pay it");
    let again = cancel(checkout_id.to_string()).await;
    assert_eq!(again.status(), StatusCode::OK, "cancel is idempotent");
    assert_eq!(again.json::<Value>().await.unwrap()["orders"], canceled["orders"]);

    let paid = app.paid_checkout(&[("seller_a", "10.00", "USD")]).await;
    let refused = cancel(paid["checkout_id"].as_str().unwrap().to_string()).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "checkout_not_cancelable");
    assert_eq!(app.balance("seller_a").await, "10.00");
    assert_eq!(cancel(uuid()).await.status(), StatusCode::NOT_FOUND);
}
