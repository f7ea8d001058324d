//! Scheduled jobs: the unfinished-order alert fires and clears, the audit
//! alerts on a broken ledger, stuck work is synced from the PSP.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

async fn wait_alerts(app: &TestApp, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let alerts = app.get_json("/v1/alerts").await["data"].as_array().unwrap().clone();
        if want(&alerts) {
            return alerts;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "alerts never matched: {alerts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_order_left_executing_raises_one_alert_that_clears_when_it_completes() {
    let receiver = crate::helpers::Receiver::spawn(0).await;
    let url = receiver.url.clone();
    let app = spawn_app_with(move |s| {
        s.alerts.unfinished_after_minutes = 0;
        s.alerts.webhook_url = url;
        s.jobs.unfinished_alert = "* * * * * *".into();
    })
    .await;
    let checkout = app.create_hosted(&[("seller_a", "5.00", "USD")]).await;
    let order_id = checkout["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    let alerts = wait_alerts(&app, |a| a.iter().any(|x| x["subject_id"] == order_id.as_str())).await;
    assert_eq!(alerts.iter().filter(|x| x["kind"] == "unfinished_order").count(), 1);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM alerts WHERE kind = 'unfinished_order'"), 1, "one alert per order");
    let posted = receiver.wait_for("the alert POSTed", |r| !r.is_empty()).await;
    assert_eq!(posted[0].json()["subject_id"], json!(order_id));

    app.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await;
    wait_alerts(&app, |a| a.is_empty()).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM alerts WHERE status = 'resolved'"), 1);
}

#[tokio::test]
async fn the_ledger_audit_alerts_on_a_broken_ledger() {
    let app = spawn_app_with(|_| {}).await;
    app.paid_checkout(&[("seller_a", "5.00", "USD")]).await;
    assert!(till::jobs::tasks::ledger_audit(&app.ctx).await.unwrap());
    app.execute("UPDATE wallets SET balance_minor = balance_minor + 1").unwrap();
    assert!(!till::jobs::tasks::ledger_audit(&app.ctx).await.unwrap());
    let alerts = app.get_json("/v1/alerts").await;
    assert_eq!(alerts["data"][0]["kind"], "ledger_audit");
    assert!(alerts["data"][0]["message"].as_str().unwrap().contains("wallet seller_a"));
    app.execute("UPDATE wallets SET balance_minor = balance_minor - 1").unwrap();
    assert!(till::jobs::tasks::ledger_audit(&app.ctx).await.unwrap());
    assert_eq!(app.get_json("/v1/alerts").await["data"], json!([]));
}

#[tokio::test]
async fn a_hosted_checkout_whose_webhooks_are_all_lost_is_synced_from_the_psp() {
    let app = spawn_app_with(|s| s.payments.checkout_expires_minutes = 30).await;
    app.set_faults(json!({"webhook_drop_rate": 1.0})).await;
    let checkout = app.create_hosted(&[("seller_a", "5.00", "USD")]).await;
    let checkout_id = checkout["checkout_id"].as_str().unwrap();
    app.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get_json(&format!("/v1/checkouts/{checkout_id}")).await["is_payment_done"], false);
    // The sync job was queued for when the session must have ended; bring it forward.
    let moved = app
        .ctx
        .db
        .write_now(|tx| {
            tx.execute(
                "UPDATE jobs SET run_at_ms = 0 WHERE kind = 'sync_checkout' AND subject_id = $1",
                till::db::params![checkout_id],
            )
        })
        .unwrap();
    assert_eq!(moved, 1, "a sync job is queued with every hosted checkout");
    app.ctx.queue_wake.notify_one();
    let done = app.wait_until_done(checkout_id).await;
    assert_eq!(done["orders"][0]["status"], "SUCCESS");
}

#[tokio::test]
async fn idempotency_keys_older_than_a_day_are_cleaned_up() {
    let app = spawn_app_with(|_| {}).await;
    app.post_json("/v1/webhook_endpoints", &json!({"url": "https://a.example"}), Some("k1")).await;
    app.post_json("/v1/webhook_endpoints", &json!({"url": "https://b.example"}), Some("k2")).await;
    app.execute("UPDATE idempotency_keys SET created_at_ms = created_at_ms - 86400001 WHERE idempotency_key = 'k1'")
        .unwrap();
    assert_eq!(till::jobs::tasks::idempotency_cleanup(&app.ctx).await.unwrap(), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM idempotency_keys"), 1);
}
