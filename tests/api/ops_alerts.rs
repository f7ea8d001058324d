//! A failed payout and a failed refund each raise an alert (beside dead
//! letters and unfinished orders), listed by `GET /v1/alerts` with what to do.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

async fn fast_app() -> TestApp {
    spawn_app_with(|s| {
        s.queue.backoff_base_ms = 20;
        s.queue.backoff_cap_ms = 200;
        s.queue.max_attempts = 100;
    })
    .await
}

async fn open_alert(app: &TestApp, kind: &str, subject: &str) -> Value {
    let alerts = app.get_json("/v1/alerts").await;
    let found = alerts["data"].as_array().unwrap().iter().find(|a| a["kind"] == kind && a["subject_id"] == subject);
    found.cloned().unwrap_or_else(|| panic!("no open {kind} alert for {subject}: {alerts}"))
}

#[tokio::test]
async fn a_failed_payout_and_a_failed_refund_raise_alerts() {
    let app = fast_app().await;
    let done = app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    let order_id = done["orders"][0]["payment_order_id"].as_str().unwrap();

    // The sandbox fails a refund of exactly 0.13.
    let refund: Value = app.refund(order_id, json!({"amount": "0.13"})).await.json().await.unwrap();
    let refund_id = refund["refund_id"].as_str().unwrap();
    assert_eq!(app.wait_refund(refund_id).await["status"], "FAILED");
    let alert = open_alert(&app, "refund_failed", refund_id).await;
    let message = alert["message"].as_str().unwrap();
    assert!(message.contains(order_id) && message.contains("refundable again"), "{message}");

    // A destination the sandbox refuses fails the payout.
    let put = app
        .client
        .put(format!("{}/v1/sellers/seller_a", app.address))
        .bearer_auth(&app.api_key)
        .json(&json!({"name": "Seller A", "payout_destination": "acct_fail_closed"}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let payout: Value = app
        .post_json("/v1/payouts", &json!({"seller_id": "seller_a", "currency": "USD"}), None)
        .await
        .json()
        .await
        .unwrap();
    let payout_id = payout["payout_id"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    while app.get_json(&format!("/v1/payouts/{payout_id}")).await["status"] != "FAILED" {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the payout never failed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let alert = open_alert(&app, "payout_failed", &payout_id).await;
    assert!(alert["message"].as_str().unwrap().contains("back in the seller's wallet"), "{alert}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM alerts WHERE kind IN ('payout_failed', 'refund_failed')"),
        2,
        "one alert each"
    );
}
