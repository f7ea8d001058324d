//! Races a shop's backend and its staff can start at once, which the books
//! must survive on either engine (issue 16: on PostgreSQL every write is a
//! SERIALIZABLE transaction, run again when PostgreSQL says it raced).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{hosted_body, spawn_app_with, token_body};

#[tokio::test]
async fn fifty_identical_creates_at_once_make_one_checkout() {
    let app = spawn_app_with(|_| {}).await;
    for body in
        [hosted_body(&[("seller_a", "25.00", "USD")]), token_body("pm_card_visa", &[("seller_a", "5.00", "USD")])]
    {
        let responses = futures_util::future::join_all((0..50).map(|_| app.post_payment(&body))).await;
        let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::OK), "{statuses:?}");
        let id = body["checkout_id"].as_str().unwrap();
        let n = app.count(&format!("SELECT COUNT(*) FROM payment_events WHERE checkout_id = '{id}'"));
        assert_eq!(n, 1);
    }
    // The token payment is charged once.
    for id in app
        .ctx
        .db
        .read_now(|tx| {
            tx.query_map(
                "SELECT checkout_id FROM payment_events WHERE payment_method = 'token'",
                till::db::params![],
                |r| r.get::<String>(0),
            )
        })
        .unwrap()
    {
        let done = app.wait_until_done(&id).await;
        assert_eq!(done["orders"][0]["status"], "SUCCESS");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_orders"), 2);
}

/// A payout of everything and a refund of everything, at once, on a seller
/// who has just enough for one: one of them is refused, the wallet never
/// goes below zero, and the books stay whole.
#[tokio::test]
async fn a_payout_racing_a_refund_never_takes_the_wallet_below_zero() {
    let app = spawn_app_with(|s| {
        s.queue.backoff_base_ms = 20;
        s.queue.backoff_cap_ms = 200;
    })
    .await;
    let seller = json!({"name": "A", "payout_destination": "acct_seller_a"});
    let put = app.client.put(format!("{}/v1/sellers/seller_a", app.address)).bearer_auth(&app.api_key).json(&seller);
    assert!(put.send().await.unwrap().status().is_success());
    for round in 0..5 {
        let paid = app.paid_checkout(&[("seller_a", "10.00", "USD")]).await;
        let order = paid["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
        let refund = app.refund(&order, json!({"amount": "10.00"}));
        let payout_body = json!({"seller_id": "seller_a", "currency": "USD", "amount": "10.00"});
        let payout = app.post_json("/v1/payouts", &payout_body, None);
        let (refund, payout) = tokio::join!(refund, payout);
        let (r, p) = (refund.status(), payout.status());
        assert!(
            (r == StatusCode::CREATED) != (p == StatusCode::CREATED),
            "round {round}: exactly one of them goes through (refund {r}, payout {p})"
        );
        let refused: Value = if r == StatusCode::CREATED { payout.json().await } else { refund.json().await }.unwrap();
        assert_eq!(refused["error"]["type"], "invalid_request_error", "round {round}: {refused}");
        let wallet = app.get_json("/v1/wallets/seller_a").await;
        assert_eq!(wallet["balances"][0]["balance"], "0.00", "round {round}: {wallet}");
        app.assert_ledger_ok();
    }
}
