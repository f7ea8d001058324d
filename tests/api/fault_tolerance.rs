//! Exactly once under PSP faults: 500s, work-then-timeout, and duplicated
//! webhooks, with every order ending SUCCESS and charged once.

use std::time::Instant;

use serde_json::{Value, json};

use crate::helpers::{assert_one_charge_per_order, spawn_app_with, token_body};

#[tokio::test]
async fn thirty_token_payments_through_a_faulty_psp_are_each_charged_once() {
    let app = spawn_app_with(|s| {
        s.psp.request_timeout_ms = 400;
        s.queue.lease_ms = 2_000;
        s.webhooks.timeout_ms = 1_000;
        s.queue.backoff_base_ms = 20;
        s.queue.backoff_cap_ms = 300;
        s.queue.max_attempts = 60;
        s.sandbox.faults.seed = 7;
    })
    .await;
    app.set_faults(json!({"error_rate": 0.25, "timeout_rate": 0.15, "webhook_duplicate_rate": 0.5, "seed": 7})).await;
    let started = Instant::now();
    let mut checkouts = Vec::new();
    for i in 0..30 {
        let body =
            token_body("pm_card_visa", &[("seller_a", "10.00", "USD"), ("seller_b", &format!("{}.01", i + 1), "USD")]);
        // The create call itself never touches the PSP for tokens; it is stored and queued.
        let resp = app.post_payment(&body).await;
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
        checkouts.push(body["checkout_id"].as_str().unwrap().to_string());
    }
    for id in &checkouts {
        let done: Value = app.wait_until_done(id).await;
        for order in done["orders"].as_array().unwrap() {
            assert_eq!(order["status"], "SUCCESS", "{order}");
        }
    }
    let converged = started.elapsed();
    let b_expected: i64 = (1..=30).map(|i| i * 100 + 1).sum();
    assert_eq!(app.get_json("/v1/wallets/seller_a").await["balances"][0]["balance"], "300.00");
    let b = app.get_json("/v1/wallets/seller_b").await;
    assert_eq!(
        b["balances"][0]["balance"],
        till::money::format_minor(b_expected, till::money::Currency::parse("USD").unwrap())
    );
    assert_one_charge_per_order(&app.settings.sandbox.database_path, &app.ctx.db);
    let attempts = app.count("SELECT SUM(attempts) FROM jobs WHERE kind = 'charge_order'");
    let calls = app.count("SELECT COUNT(*) FROM psp_calls");
    let unknown = app.count("SELECT COUNT(*) FROM psp_calls WHERE outcome LIKE '%unknown%'");
    println!(
        "fault test: 60 orders converged in {converged:?}; {attempts} charge attempts, {calls} PSP calls, {unknown} unknown outcomes"
    );
    assert!(unknown > 0, "the faults were exercised");
}
