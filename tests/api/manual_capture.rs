//! Authorize now, capture later (SPEC §3.6a), through the API and the
//! hosted page: orders stop at AUTHORIZED with nothing booked, a capture
//! (whole or partial) books what it took and releases the rest, a void
//! releases it all, a capture and a void racing each other end one way,
//! and an authorization left uncaptured expires (with an alert first).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A manual hosted checkout's body.
fn manual_hosted(orders: &[(&str, &str, &str)]) -> Value {
    let mut body = hosted_body(orders);
    body["capture_method"] = json!("manual");
    body
}

fn manual_token(token: &str, orders: &[(&str, &str, &str)]) -> Value {
    let mut body = token_body(token, orders);
    body["capture_method"] = json!("manual");
    body
}

impl TestApp {
    /// Polls the checkout until its `status` is `status`.
    async fn wait_for_status(&self, checkout_id: &str, status: &str) -> Value {
        let started = Instant::now();
        loop {
            let checkout = self.get_json(&format!("/v1/checkouts/{checkout_id}")).await;
            if checkout["status"] == status {
                return checkout;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "checkout never became {status}: {checkout}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A manual hosted checkout paid on the hosted page, once it is authorized.
    async fn authorized_hosted(&self, orders: &[(&str, &str, &str)]) -> Value {
        let resp = self.post_payment(&manual_hosted(orders)).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let created: Value = resp.json().await.unwrap();
        assert_eq!(created["capture_method"], "manual");
        let paid = self.pay(created["redirect_url"].as_str().unwrap(), "4242424242424242").await;
        assert_eq!(paid.status(), StatusCode::SEE_OTHER, "the buyer is sent to the shop's success page");
        self.wait_for_status(created["checkout_id"].as_str().unwrap(), "authorized").await
    }

    async fn capture(&self, checkout_id: &str, body: Value) -> reqwest::Response {
        self.post_json(&format!("/v1/checkouts/{checkout_id}/capture"), &body, None).await
    }

    async fn void(&self, checkout_id: &str) -> reqwest::Response {
        self.post_json(&format!("/v1/checkouts/{checkout_id}/void"), &json!({}), None).await
    }

    fn payins(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM ledger_transactions WHERE source_type = 'payment_order'")
    }

    fn psp_balance(&self) -> i64 {
        self.value(
            "SELECT COALESCE(SUM(s.balance_minor), 0) FROM ledger_balance_shards s
             JOIN ledger_accounts a ON a.id = s.account_id WHERE a.name = 'assets:psp_balance'",
        )
    }
}

fn order_id(checkout: &Value, i: usize) -> String {
    checkout["orders"][i]["payment_order_id"].as_str().unwrap().to_string()
}

fn id(checkout: &Value) -> String {
    checkout["checkout_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_hosted_authorization_is_captured_in_part_booked_for_what_was_taken_and_the_rest_released() {
    let app = spawn_app().await;
    let receiver = Receiver::spawn(0).await;
    app.post_json("/v1/webhook_endpoints", &json!({"url": receiver.url}), None).await;
    let checkout = app.authorized_hosted(&[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    let checkout_id = id(&checkout);

    // Authorized: the PSP holds the money; nothing is booked.
    for order in checkout["orders"].as_array().unwrap() {
        assert_eq!(order["status"], "AUTHORIZED", "{order}");
        assert_eq!(order["wallet_updated"], false);
        assert!(order["capture_before"].as_str().is_some(), "{order}");
        assert_eq!(order["amount_captured"], Value::Null);
    }
    assert_eq!(checkout["is_payment_done"], false);
    assert_eq!((app.payins(), app.psp_balance()), (0, 0), "nothing booked while authorized");
    let wallet = app.get_json("/v1/wallets/seller_a").await;
    assert_eq!(wallet["balances"][0]["authorized"], "25.00", "{wallet}");
    assert_eq!(wallet["balances"][0]["balance"], "0.00", "{wallet}");
    let intent = intent_of_checkout(&app, &checkout_id);
    let at_psp = app.sandbox_get(&format!("/v1/payment_intents/{intent}")).await;
    assert_eq!(
        (at_psp["status"].as_str(), at_psp["amount_capturable"].as_i64()),
        (Some("requires_capture"), Some(3500))
    );

    // Capture 20.00 of seller_a's order and all of seller_b's: one capture of 30.00.
    let body = json!({"orders": [{"payment_order_id": order_id(&checkout, 0), "amount": "20.00"}]});
    let captured = app.capture(&checkout_id, body.clone()).await;
    assert_eq!(captured.status(), StatusCode::OK);
    let captured: Value = captured.json().await.unwrap();
    assert_eq!(captured["status"], "succeeded", "{captured}");
    assert_eq!(captured["orders"][0]["amount"], "25.00", "the order's amount stays what was authorized");
    assert_eq!(captured["orders"][0]["amount_captured"], "20.00");
    assert_eq!(captured["orders"][1]["amount_captured"], "10.00");
    let at_psp = app.sandbox_get(&format!("/v1/payment_intents/{intent}")).await;
    assert_eq!((at_psp["status"].as_str(), at_psp["amount_received"].as_i64()), (Some("succeeded"), Some(3000)));

    // Wallets and ledger show what was captured, and only that.
    assert_eq!(app.balance("seller_a").await, "20.00");
    assert_eq!(app.balance("seller_b").await, "10.00");
    assert_eq!((app.payins(), app.psp_balance()), (2, 3000));
    assert_eq!(app.get_json("/v1/wallets/seller_a").await["balances"][0]["authorized"], "0.00");

    // The same capture again answers the same; another, or a void, is refused.
    assert_eq!(app.capture(&checkout_id, body).await.status(), StatusCode::OK);
    let other = app.capture(&checkout_id, json!({})).await;
    assert_eq!(other.status(), StatusCode::CONFLICT);
    assert_eq!(other.json::<Value>().await.unwrap()["error"]["code"], "checkout_not_capturable");
    let void = app.void(&checkout_id).await;
    assert_eq!(void.status(), StatusCode::CONFLICT);
    assert_eq!(void.json::<Value>().await.unwrap()["error"]["code"], "checkout_not_voidable");

    // Refunds come out of what was captured.
    let too_much = app.refund(&order_id(&checkout, 0), json!({"amount": "20.01"})).await;
    assert_eq!(too_much.status(), StatusCode::BAD_REQUEST);
    let refund: Value = app.refund(&order_id(&checkout, 0), json!({"amount": "20.00"})).await.json().await.unwrap();
    assert_eq!(app.wait_refund(refund["refund_id"].as_str().unwrap()).await["status"], "SUCCEEDED");
    assert_eq!(app.balance("seller_a").await, "0.00");

    // The shop heard each step.
    let types =
        |all: &[Received]| all.iter().map(|r| r.json()["type"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let all = receiver
        .wait_for("the capture's events", |all| types(all).iter().filter(|t| *t == "checkout.completed").count() == 1)
        .await;
    let seen = types(&all);
    for (event, n) in [
        ("payment_order.authorized", 2),
        ("checkout.authorized", 1),
        ("payment_order.succeeded", 2),
        ("checkout.completed", 1),
    ] {
        assert_eq!(seen.iter().filter(|t| *t == event).count(), n, "{event}: {seen:?}");
    }
    let authorized = all.iter().find(|r| r.json()["type"] == "checkout.authorized").unwrap().json();
    assert_eq!(authorized["data"]["status"], "authorized");

    // The PSP's report has one charge of what was captured: it matches the checkout.
    let summary = till::reconciliation::reconcile_day(&app.ctx, chrono::Utc::now().date_naive()).await.unwrap();
    let counts = &summary.run.counts;
    assert_eq!(counts.get("matched").copied(), Some(2), "the charge and the refund: {counts:?}");
    assert_eq!(counts.values().sum::<i64>(), 2, "nothing else: {counts:?}");
}

/// The payment intent a hosted checkout's orders recorded.
fn intent_of_checkout(app: &TestApp, checkout_id: &str) -> String {
    app.ctx
        .db
        .read_now(|tx| {
            tx.query_value(
                "SELECT MIN(psp_payment_intent_id) FROM payment_orders WHERE checkout_id = $1",
                till::db::params![checkout_id],
            )
        })
        .unwrap()
}

#[tokio::test]
async fn a_token_authorization_is_voided_released_at_the_psp_and_never_booked() {
    let app = spawn_app().await;
    let resp = app.post_payment(&manual_token("pm_card_visa", &[("seller_a", "12.00", "EUR")])).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let checkout_id = id(&resp.json::<Value>().await.unwrap());
    let authorized = app.wait_for_status(&checkout_id, "authorized").await;
    assert_eq!(authorized["orders"][0]["status"], "AUTHORIZED");
    let intent = intent_of(&app, &checkout_id);

    let voided = app.void(&checkout_id).await;
    assert_eq!(voided.status(), StatusCode::OK);
    let voided: Value = voided.json().await.unwrap();
    assert_eq!(voided["orders"][0]["status"], "FAILED");
    assert_eq!(voided["orders"][0]["failure_code"], "canceled");
    assert_eq!(voided["is_payment_done"], true);
    let at_psp = app.sandbox_get(&format!("/v1/payment_intents/{intent}")).await;
    assert_eq!(at_psp["status"], "canceled", "{at_psp}");
    assert_eq!((app.payins(), app.psp_balance()), (0, 0));
    assert_eq!(app.void(&checkout_id).await.status(), StatusCode::OK, "voided again: the same answer");
    assert_eq!(
        app.capture(&checkout_id, json!({})).await.status(),
        StatusCode::CONFLICT,
        "never a capture after a void"
    );
}

#[tokio::test]
async fn a_capture_racing_a_void_ends_one_way_and_the_other_is_refused() {
    let app = spawn_app().await;
    for round in 0..4 {
        let checkout = app.authorized_hosted(&[("seller_a", "8.00", "USD")]).await;
        let checkout_id = id(&checkout);
        let (captured, voided) = tokio::join!(app.capture(&checkout_id, json!({})), app.void(&checkout_id));
        let statuses = (captured.status(), voided.status());
        let done = app.get_json(&format!("/v1/checkouts/{checkout_id}")).await;
        let intent = intent_of_checkout(&app, &checkout_id);
        let at_psp = app.sandbox_get(&format!("/v1/payment_intents/{intent}")).await;
        match statuses {
            (StatusCode::OK, StatusCode::CONFLICT) => {
                assert_eq!(done["orders"][0]["status"], "SUCCESS", "round {round}: {done}");
                assert_eq!(at_psp["status"], "succeeded");
            }
            (StatusCode::CONFLICT, StatusCode::OK) => {
                assert_eq!(done["orders"][0]["status"], "FAILED", "round {round}: {done}");
                assert_eq!(at_psp["status"], "canceled");
            }
            other => panic!("round {round}: one must win and the other be refused, not {other:?}"),
        }
    }
    let succeeded = app.count("SELECT COUNT(*) FROM payment_orders WHERE payment_order_status = 'SUCCESS'");
    assert_eq!(app.payins(), succeeded, "each captured order booked once, no voided one");
}

#[tokio::test]
async fn an_uncaptured_authorization_raises_an_alert_then_expires_and_is_released() {
    // About 1.7 s to capture: less than a day, so the alert comes at once.
    let app = spawn_app_with(|s| s.payments.authorization_days = "0.00002".parse().unwrap()).await;
    let resp = app.post_payment(&manual_token("pm_card_visa", &[("seller_a", "5.00", "USD")])).await;
    let checkout_id = id(&resp.json::<Value>().await.unwrap());
    app.wait_for_status(&checkout_id, "authorized").await;
    let intent = intent_of(&app, &checkout_id);
    let started = Instant::now();
    loop {
        let alerts = app.count(&format!(
            "SELECT COUNT(*) FROM alerts WHERE kind = 'authorization_expiring' AND subject_id = '{checkout_id}'"
        ));
        if alerts == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no expiry alert");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let expired = app.wait_until_done(&checkout_id).await;
    assert_eq!(expired["orders"][0]["status"], "FAILED");
    assert_eq!(expired["orders"][0]["failure_code"], "authorization_expired");
    let at_psp = app.sandbox_get(&format!("/v1/payment_intents/{intent}")).await;
    assert_eq!(at_psp["status"], "canceled", "released at the PSP: {at_psp}");
    let resolved = app.count(&format!(
        "SELECT COUNT(*) FROM alerts WHERE kind = 'authorization_expiring' AND subject_id = '{checkout_id}'
         AND status = 'resolved'"
    ));
    assert_eq!(resolved, 1, "the alert is answered by the expiry");
    let late = app.capture(&checkout_id, json!({})).await;
    assert_eq!(late.status(), StatusCode::CONFLICT, "an expired authorization is not captured");
    assert_eq!(app.payins(), 0);
}

#[tokio::test]
async fn an_authorization_the_psp_lets_expire_ends_the_orders_as_expired() {
    // The PSP's window (about 1.7 s) is shorter than till's (7 days).
    let app = spawn_app_with(|s| s.sandbox.authorization_days = "0.00002".parse().unwrap()).await;
    let checkout = app.authorized_hosted(&[("seller_a", "9.00", "USD"), ("seller_b", "1.00", "USD")]).await;
    let done = app.wait_until_done(&id(&checkout)).await;
    for order in done["orders"].as_array().unwrap() {
        assert_eq!(
            (order["status"].as_str(), order["failure_code"].as_str()),
            (Some("FAILED"), Some("authorization_expired"))
        );
    }
    assert_eq!(done["status"], "failed");
    assert_eq!(app.capture(&id(&checkout), json!({})).await.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn canceling_an_authorized_checkout_voids_it() {
    let app = spawn_app().await;
    let checkout = app.authorized_hosted(&[("seller_a", "7.00", "USD")]).await;
    let canceled = app.post_json(&format!("/v1/checkouts/{}/cancel", id(&checkout)), &json!({}), None).await;
    assert_eq!(canceled.status(), StatusCode::OK);
    let canceled: Value = canceled.json().await.unwrap();
    assert_eq!(canceled["orders"][0]["status"], "FAILED");
    assert_eq!(canceled["orders"][0]["failure_code"], "canceled");
    let intent = intent_of_checkout(&app, &id(&checkout));
    assert_eq!(app.sandbox_get(&format!("/v1/payment_intents/{intent}")).await["status"], "canceled");
}

#[tokio::test]
async fn a_capture_is_replayed_under_its_idempotency_key() {
    let app = spawn_app().await;
    let checkout = app.authorized_hosted(&[("seller_a", "4.00", "USD")]).await;
    let path = format!("/v1/checkouts/{}/capture", id(&checkout));
    let first = app.post_json(&path, &json!({}), Some("cap-1")).await;
    assert_eq!(first.status(), StatusCode::OK);
    let again = app.post_json(&path, &json!({}), Some("cap-1")).await;
    assert_eq!(again.headers().get("Idempotent-Replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(app.payins(), 1);
}

#[tokio::test]
async fn bad_captures_are_refused_naming_what_is_wrong_and_change_nothing() {
    let app = spawn_app().await;
    let mut body = hosted_body(&[("seller_a", "5.00", "USD")]);
    body["capture_method"] = json!("later");
    let refused: Value = app.post_payment(&body).await.json().await.unwrap();
    assert_eq!(refused["error"]["param"], "capture_method", "{refused}");
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events"), 0, "nothing stored");

    let automatic = app.paid_checkout(&[("seller_a", "5.00", "USD")]).await;
    let resp = app.capture(&id(&automatic), json!({})).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT, "an automatic checkout is captured already");

    let unpaid: Value = app.post_payment(&manual_hosted(&[("seller_a", "5.00", "USD")])).await.json().await.unwrap();
    let resp: Value = app.capture(&id(&unpaid), json!({})).await.json().await.unwrap();
    assert_eq!(resp["error"]["code"], "checkout_not_capturable", "not authorized yet: {resp}");

    let checkout = app.authorized_hosted(&[("seller_a", "5.00", "USD"), ("seller_b", "3.00", "USD")]).await;
    let (a, b) = (order_id(&checkout, 0), order_id(&checkout, 1));
    for (orders, param) in [
        (json!([{"payment_order_id": uuid(), "amount": "1.00"}]), "orders[0].payment_order_id"),
        (json!([{"payment_order_id": a, "amount": "5.01"}]), "orders[0].amount"),
        (json!([{"payment_order_id": a, "amount": "1.001"}]), "orders[0].amount"),
        (json!([{"payment_order_id": a, "amount": "-1.00"}]), "orders[0].amount"),
        (
            json!([{"payment_order_id": b, "amount": "1.00"}, {"payment_order_id": b, "amount": "1.00"}]),
            "orders[1].payment_order_id",
        ),
        (
            json!([{"payment_order_id": a, "amount": "0"}, {"payment_order_id": b, "amount": "0.00"}]),
            "orders[0].amount",
        ),
    ] {
        let resp = app.capture(&id(&checkout), json!({"orders": orders})).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{orders}");
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{orders}: {error}");
    }
    let unknown_field = app.capture(&id(&checkout), json!({"amount": "1.00"})).await;
    assert_eq!(unknown_field.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.capture(&uuid(), json!({})).await.status(), StatusCode::NOT_FOUND);
    let still = app.get_json(&format!("/v1/checkouts/{}", id(&checkout))).await;
    assert_eq!(still["status"], "authorized", "a refused capture changes nothing: {still}");
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events WHERE capture_decision IS NOT NULL"), 0);

    // Releasing one order at capture: it ends FAILED canceled, the other is booked.
    let resp = app.capture(&id(&checkout), json!({"orders": [{"payment_order_id": b, "amount": "0"}]})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let done: Value = resp.json().await.unwrap();
    assert_eq!(done["orders"][0]["status"], "SUCCESS");
    assert_eq!(
        (done["orders"][1]["status"].as_str(), done["orders"][1]["failure_code"].as_str()),
        (Some("FAILED"), Some("canceled"))
    );
    assert_eq!(done["status"], "partially_succeeded");
    assert_eq!(app.balance("seller_a").await, "10.00", "5.00 of this and 5.00 of the automatic one");
}

#[tokio::test]
async fn a_capture_made_at_the_psp_outside_till_is_booked_from_its_event() {
    let app = spawn_app().await;
    let checkout = app.authorized_hosted(&[("seller_a", "30.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    let intent = intent_of_checkout(&app, &id(&checkout));
    // In the PSP's own dashboard: 20.00 of the 40.00 captured.
    let captured =
        app.sandbox_post(&format!("/v1/payment_intents/{intent}/capture"), &[("amount_to_capture", "2000")]).await;
    assert_eq!(captured.status(), StatusCode::OK);
    let done = app.wait_until_done(&id(&checkout)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // Shared in proportion to the orders' amounts: 15.00 and 5.00.
    assert_eq!(
        (done["orders"][0]["amount_captured"].as_str(), done["orders"][1]["amount_captured"].as_str()),
        (Some("15.00"), Some("5.00"))
    );
    assert_eq!((app.balance("seller_a").await, app.balance("seller_b").await), ("15.00".into(), "5.00".into()));
    assert_eq!(app.psp_balance(), 2000);
    let void = app.void(&id(&checkout)).await;
    assert_eq!(void.status(), StatusCode::CONFLICT, "captured: no void");
}
