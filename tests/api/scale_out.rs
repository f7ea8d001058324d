//! Several tills on one PostgreSQL database (issue 17): two `till serve`
//! processes share the database behind a "load balancer" (requests go to
//! either at random), the first runs the sandbox PSP for both; under PSP
//! faults every order ends final and charged once, refunds and payouts are
//! made once, each scheduled tick runs in one process only, and the books
//! balance. Needs `TILL_TEST_POSTGRES_URL` (CI sets it).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};
use till::db::params;

use crate::helpers::{TestApp, fresh_postgres_database, spawn_app_with, token_body};

fn fast(s: &mut till::config::Settings) {
    s.psp.request_timeout_ms = 400;
    s.queue.lease_ms = 2_000;
    s.webhooks.timeout_ms = 1_000;
    s.queue.backoff_base_ms = 20;
    s.queue.backoff_cap_ms = 300;
    s.queue.max_attempts = 80;
    // Every second, so that both processes meet the same ticks often.
    s.jobs.unfinished_alert = "* * * * * *".into();
    s.jobs.psp_sync = "* * * * * *".into();
}

/// POSTs `body` to either till until one answers without a 5xx, as a
/// client behind a load balancer retries the same body.
async fn post_anywhere(tills: &[&TestApp], path: &str, body: &Value) -> (StatusCode, Value) {
    for _ in 0..100 {
        let app = tills[rand::rng().random_range(0..tills.len())];
        let resp = app.post_json(path, body, None).await;
        if !resp.status().is_server_error() {
            let status = resp.status();
            return (status, resp.json().await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never answered");
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(60), "{what} never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tills_on_one_database_charge_once_run_each_tick_once_and_keep_the_books() {
    let Ok(server) = std::env::var("TILL_TEST_POSTGRES_URL") else {
        eprintln!("scale_out: TILL_TEST_POSTGRES_URL is not set; CI sets it");
        return;
    };
    let url = fresh_postgres_database(&server);
    let first = spawn_app_with(|s| {
        fast(s);
        s.database.url = url.clone();
    })
    .await;
    let second = spawn_app_with(|s| {
        fast(s);
        s.database.url = url.clone();
        s.sandbox.enabled = false;
        s.psp.api_base = first.sandbox.clone();
    })
    .await;
    let tills = [&first, &second];
    first.set_faults(json!({"error_rate": 0.2, "timeout_rate": 0.1, "webhook_duplicate_rate": 0.5, "seed": 17})).await;

    let seller = json!({"name": "S", "payout_destination": "acct_seller_s"});
    let (status, _) = (first.client.put(format!("{}/v1/sellers/seller_s", second.address)))
        .bearer_auth(&second.api_key)
        .json(&seller)
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert!(status.is_success());
    let mut checkouts = Vec::new();
    for i in 0..24 {
        let body = token_body("pm_card_visa", &[("seller_s", &format!("{}.00", 20 + i), "USD")]);
        let (status, _) = post_anywhere(&tills, "/v1/payments", &body).await;
        assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status}");
        checkouts.push(body);
    }
    let mut orders = Vec::new();
    for body in &checkouts {
        let id = body["checkout_id"].as_str().unwrap();
        let done = tills[rand::rng().random_range(0..2)].wait_until_done(id).await;
        assert_eq!(done["orders"][0]["status"], "SUCCESS", "{done}");
        orders.push(done["orders"][0]["payment_order_id"].as_str().unwrap().to_string());
    }
    // Refunds and payouts, each to either till.
    let mut refunds = Vec::new();
    for order in orders.iter().take(8) {
        let (status, refund) =
            post_anywhere(&tills, &format!("/v1/payments/{order}/refunds"), &json!({"amount": "2.00"})).await;
        assert_eq!(status, StatusCode::CREATED, "{refund}");
        refunds.push(refund["refund_id"].as_str().unwrap().to_string());
    }
    let mut payouts = Vec::new();
    for _ in 0..4 {
        let body = json!({"seller_id": "seller_s", "currency": "USD", "amount": "10.00"});
        let (status, payout) = post_anywhere(&tills, "/v1/payouts", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{payout}");
        payouts.push(payout["payout_id"].as_str().unwrap().to_string());
    }
    for id in &refunds {
        wait_for("a refund", async || first.get_json(&format!("/v1/refunds/{id}")).await["status"] == "SUCCEEDED")
            .await;
    }
    for id in &payouts {
        wait_for("a payout", async || second.get_json(&format!("/v1/payouts/{id}")).await["status"] == "PAID").await;
    }

    // The PSP's books: each order charged once, each refund and payout made once.
    let psp = rusqlite::Connection::open(&first.settings.sandbox.database_path).unwrap();
    let per_order: HashMap<String, i64> = psp
        .prepare(
            "SELECT json_extract(metadata, '$.payment_order_id'), COUNT(*) FROM payment_intents
             WHERE status = 'succeeded' GROUP BY 1",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(per_order.len(), orders.len());
    assert!(orders.iter().all(|o| per_order.get(o) == Some(&1)), "{per_order:?}");
    let count = |sql: &str| -> i64 { psp.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM refunds"), refunds.len() as i64);
    assert_eq!(count("SELECT COUNT(*) FROM transfers"), payouts.len() as i64);

    // Each scheduled tick ran in one process: no job started twice in one
    // second. (The payments may all be done within one tick: wait for a
    // few ticks, while both processes live.)
    let read_runs = || -> Vec<(String, String, String)> {
        first
            .ctx
            .db
            .read_now(|tx| {
                tx.query_map("SELECT job, holder, started_at FROM scheduled_runs", params![], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
            .unwrap()
    };
    let waited = std::time::Instant::now();
    let mut runs = read_runs();
    while runs.len() < 6 && waited.elapsed() < std::time::Duration::from_secs(20) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        runs = read_runs();
    }
    assert!(runs.len() >= 6, "the scheduler ran: {runs:?}");
    let mut per_tick: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (job, holder, at) in runs {
        per_tick.entry((job, at[..19].to_string())).or_default().push(holder);
    }
    let twice: Vec<_> = per_tick.iter().filter(|(_, holders)| holders.len() > 1).collect();
    assert!(twice.is_empty(), "ticks run more than once: {twice:?}");
    assert!(
        first.count("SELECT COUNT(*) FROM payment_orders WHERE payment_order_status NOT IN ('SUCCESS', 'FAILED')") == 0
    );
    first.assert_ledger_ok();
    second.assert_ledger_ok();
}
