//! `/webhooks/psp`: what does not verify is refused and changes nothing;
//! what verifies is applied once, however often it arrives.

use reqwest::StatusCode;
use serde_json::{Value, json};
use till::psp::webhook_signature::sign;

use till::db::params;

use crate::helpers::{TestApp, intent_of, session_id_of, spawn_app};

fn completed_event(session_id: &str) -> String {
    json!({
        "id": format!("evt_test_{}", uuid::Uuid::new_v4().simple()),
        "object": "event",
        "type": "checkout.session.completed",
        "created": chrono::Utc::now().timestamp(),
        "data": {"object": {"id": session_id, "object": "checkout.session",
                            "status": "complete", "payment_status": "paid"}}
    })
    .to_string()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn orders_of(app: &TestApp, checkout_id: &str) -> Vec<Value> {
    app.get_json(&format!("/v1/checkouts/{checkout_id}")).await["orders"].as_array().unwrap().clone()
}

#[tokio::test]
async fn forged_unsigned_and_stale_events_are_refused() {
    let app = spawn_app().await;
    let checkout = app.create_hosted(&[("seller_a", "25.00", "USD")]).await;
    let checkout_id = checkout["checkout_id"].as_str().unwrap();
    let body = completed_event(&session_id_of(checkout["redirect_url"].as_str().unwrap()));
    let secret = app.settings.psp.webhook_secret.clone();
    let cases = [
        ("unsigned", None),
        ("wrong secret", Some(sign("whsec_forged", now(), body.as_bytes()))),
        ("stale", Some(sign(&secret, now() - 3_600, body.as_bytes()))),
        ("from the future", Some(sign(&secret, now() + 3_600, body.as_bytes()))),
        ("garbage header", Some("t=abc,v1=xyz".to_string())),
        ("signed other body", Some(sign(&secret, now(), b"{}"))),
    ];
    for (name, signature) in cases {
        let resp = app.post_webhook(&body, signature).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{name}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM psp_events"), 0, "nothing stored");
    assert_eq!(orders_of(&app, checkout_id).await[0]["status"], "EXECUTING");
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions"), 0);
}

#[tokio::test]
async fn a_signed_event_is_checked_against_the_psp_before_acting() {
    let app = spawn_app().await;
    let checkout = app.create_hosted(&[("seller_a", "25.00", "USD")]).await;
    let checkout_id = checkout["checkout_id"].as_str().unwrap();
    // Correctly signed, but the session is not paid at the PSP: nothing moves.
    let body = completed_event(&session_id_of(checkout["redirect_url"].as_str().unwrap()));
    let resp = app.post_webhook(&body, Some(sign(&app.settings.psp.webhook_secret, now(), body.as_bytes()))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(orders_of(&app, checkout_id).await[0]["status"], "EXECUTING");
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions"), 0);
}

#[tokio::test]
async fn duplicate_events_are_applied_once() {
    let app = spawn_app().await;
    let checkout = app.create_hosted(&[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    let checkout_id = checkout["checkout_id"].as_str().unwrap();
    let url = checkout["redirect_url"].as_str().unwrap();
    app.pay(url, "4242424242424242").await;
    app.wait_until_done(checkout_id).await;

    // The same event id again and again, and a new event about the same session.
    let secret = app.settings.psp.webhook_secret.clone();
    let body = completed_event(&session_id_of(url));
    for _ in 0..3 {
        let resp = app.post_webhook(&body, Some(sign(&secret, now(), body.as_bytes()))).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let other = completed_event(&session_id_of(url));
    let resp = app.post_webhook(&other, Some(sign(&secret, now(), other.as_bytes()))).await;
    assert_eq!(resp.status(), StatusCode::OK);

    assert_eq!(app.count("SELECT MAX(deliveries) FROM psp_events"), 3);
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions"), 2, "one pay-in per order");
    assert_eq!(app.get_json("/v1/wallets/seller_a").await["balances"][0]["balance"], "25.00");
    assert_eq!(app.get_json("/v1/wallets/seller_b").await["balances"][0]["balance"], "10.00");
}

#[tokio::test]
async fn events_for_unknown_sessions_are_acknowledged_and_change_nothing() {
    let app = spawn_app().await;
    let body = completed_event("cs_test_unknown");
    let resp = app.post_webhook(&body, Some(sign(&app.settings.psp.webhook_secret, now(), body.as_bytes()))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_orders"), 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM psp_events WHERE last_error IS NOT NULL"), 1, "the reason is kept");
}

/// A `payment_intent.succeeded` event, with the body's metadata as given.
fn intent_event(intent_id: &str, metadata: Value) -> String {
    json!({
        "id": format!("evt_test_{}", uuid::Uuid::new_v4().simple()),
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": now(),
        "data": {"object": {"id": intent_id, "object": "payment_intent", "status": "succeeded",
                            "amount": 5000, "currency": "usd", "metadata": metadata}}
    })
    .to_string()
}

/// The attack of issue 13: a signed event about a real, paid hosted
/// checkout's intent, whose body names another, unpaid order. The PSP's
/// own copy of the intent names only its checkout: it pays nothing else.
#[tokio::test]
async fn a_paid_intent_cannot_pay_an_order_its_body_names() {
    let app = spawn_app().await;
    let paid = app.paid_checkout(&[("seller_a", "50.00", "USD")]).await;
    let paid_id = paid["checkout_id"].as_str().unwrap().to_string();
    let intent_id = intent_of(&app, &paid_id);
    let victim = app.create_hosted(&[("seller_b", "50.00", "USD")]).await;
    let victim_order = victim["orders"][0]["payment_order_id"].as_str().unwrap();
    let victim_checkout = victim["checkout_id"].as_str().unwrap();

    let secret = app.settings.psp.webhook_secret.clone();
    for metadata in [
        json!({"payment_order_id": victim_order}),
        json!({"payment_order_id": victim_order, "checkout_id": victim_checkout}),
    ] {
        let body = intent_event(&intent_id, metadata);
        let resp = app.post_webhook(&body, Some(sign(&secret, now(), body.as_bytes()))).await;
        assert_eq!(resp.status(), StatusCode::OK, "a signed event is acknowledged");
    }

    assert_eq!(orders_of(&app, victim_checkout).await[0]["status"], "EXECUTING", "nobody paid it");
    assert_eq!(app.count("SELECT COUNT(*) FROM wallets WHERE seller_id = 'seller_b'"), 0, "no money credited");
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM payment_orders WHERE psp_payment_intent_id = '{intent_id}'")),
        1,
        "one intent, one order"
    );
    app.assert_ledger_ok();
}

/// The database and `till check` refuse an order paid by another
/// checkout's charge, whichever code path would try.
#[tokio::test]
async fn one_charge_never_pays_another_checkouts_order_or_more_than_it_took() {
    let app = spawn_app().await;
    let paid = app.paid_checkout(&[("seller_a", "50.00", "USD")]).await;
    let paid_id = paid["checkout_id"].as_str().unwrap().to_string();
    let victim = app.create_hosted(&[("seller_b", "50.00", "USD")]).await;
    let victim_order = victim["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    let intent = intent_of(&app, &paid_id);
    let db = &app.ctx.db;

    // A charge cannot be recorded as backing more than it took.
    let over = db.write_now(|tx| {
        tx.execute(
            "UPDATE psp_charges SET backed_minor = backed_minor + 1 WHERE payment_intent_id = $1",
            params![intent],
        )
    });
    assert!(over.is_err(), "the database refuses a charge backing more than its amount");

    // Forced past the code: the audit names the order paid by another checkout's charge.
    let drop_trigger = if app.is_postgres() {
        "DROP TRIGGER payment_orders_final_stays_final ON payment_orders"
    } else {
        "DROP TRIGGER payment_orders_final_stays_final"
    };
    app.execute(drop_trigger).unwrap();
    db.write_now(|tx| {
        tx.execute(
            "UPDATE payment_orders SET payment_order_status = 'SUCCESS', psp_payment_intent_id = $2,
                    captured_minor = amount_minor
             WHERE payment_order_id = $1",
            params![victim_order, intent],
        )
    })
    .unwrap();
    let report = app.ctx.db.read_snapshot(till::ledger::check::run).unwrap();
    let sixth: Vec<&str> = report.violations.iter().filter(|v| v.invariant == 6).map(|v| v.message.as_str()).collect();
    assert!(sixth.iter().any(|m| m.contains(&victim_order) && m.contains(&paid_id)), "{sixth:?}");
    assert!(sixth.iter().any(|m| m.contains("pays orders adding up to 10000")), "{sixth:?}");

    // Undone, so the scenario's closing audit checks the rest of the books.
    db.write_now(|tx| {
        tx.execute(
            "UPDATE payment_orders SET payment_order_status = 'EXECUTING', psp_payment_intent_id = NULL,
                    captured_minor = NULL
             WHERE payment_order_id = $1",
            params![victim_order],
        )
    })
    .unwrap();
}
