//! The hosted-page pay-in as a buyer lives it: the shop creates the
//! checkout, the buyer opens the PSP's page and pays, the PSP's webhook
//! makes every order SUCCESS and credits each seller exactly once.

use reqwest::StatusCode;
use serde_json::{Value, json};
use till::ledger;
use till::money::Currency;

use crate::helpers::{session_id_of, spawn_app, spawn_app_with};

#[tokio::test]
async fn two_sellers_are_paid_through_the_hosted_page() {
    let app = spawn_app().await;
    let checkout = app.create_hosted(&[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    let checkout_id = checkout["checkout_id"].as_str().unwrap();
    assert_eq!(checkout["is_payment_done"], false);
    for order in checkout["orders"].as_array().unwrap() {
        assert_eq!(order["status"], "EXECUTING");
        assert_eq!(order["wallet_updated"], false);
        assert_eq!(order["refunded_amount"], "0.00");
    }
    let redirect_url = checkout["redirect_url"].as_str().unwrap();
    assert!(redirect_url.starts_with(&format!("{}/pay/cs_test_", app.sandbox)), "{redirect_url}");

    let page = app.client.get(redirect_url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("35.00"), "the page shows the total");
    let paid = app.pay(redirect_url, "4242 4242 4242 4242").await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    let session_id = session_id_of(redirect_url);
    assert_eq!(
        paid.headers()["Location"].to_str().unwrap(),
        format!("https://shop.example/thanks?session={session_id}")
    );

    let done = app.wait_until_done(checkout_id).await;
    for order in done["orders"].as_array().unwrap() {
        assert_eq!(order["status"], "SUCCESS", "{order}");
        assert_eq!(order["wallet_updated"], true);
        assert_eq!(order["ledger_updated"], true);
        assert_eq!(order["failure_code"], Value::Null);
    }
    let order_id = done["orders"][0]["payment_order_id"].as_str().unwrap();
    assert_eq!(app.get_json(&format!("/v1/payments/{order_id}")).await["status"], "SUCCESS");
    let wallet = app.get_json("/v1/wallets/seller_a").await;
    assert_eq!(
        wallet["balances"],
        json!([{"currency": "USD", "balance": "25.00", "available": "25.00", "pending": "0.00", "debt": "0.00",
                "authorized": "0.00"}])
    );
    assert_eq!(app.get_json("/v1/wallets/seller_b").await["balances"][0]["balance"], "10.00");
    let usd = Currency::parse("USD").unwrap();
    let balance = |account: &str| app.ctx.db.read_now(|tx| ledger::account_balance(tx, account, usd)).unwrap();
    assert_eq!(balance(ledger::PSP_BALANCE), 3500);
    assert_eq!(balance("liabilities:seller:seller_a"), -2500);
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions WHERE source_type = 'payment_order'"), 2);
    let session = app.sandbox_get(&format!("/v1/checkout/sessions/{session_id}")).await;
    assert_eq!(session["payment_status"], "paid");
    assert_eq!(session["amount_total"], 3500);
}

#[tokio::test]
async fn a_declined_card_leaves_the_session_open_for_another_try() {
    let app = spawn_app().await;
    let checkout = app.create_hosted(&[("seller_a", "12.34", "EUR")]).await;
    let url = checkout["redirect_url"].as_str().unwrap();
    let checkout_id = checkout["checkout_id"].as_str().unwrap();

    for (card, says) in [("4000000000000002", "declined"), ("4000000000009995", "insufficient funds")] {
        let declined = app.pay(url, card).await;
        assert_eq!(declined.status(), StatusCode::PAYMENT_REQUIRED, "{card}");
        let html = declined.text().await.unwrap().to_lowercase();
        assert!(html.contains(says), "{card}: the page says why");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let still = app.get_json(&format!("/v1/checkouts/{checkout_id}")).await;
    assert_eq!(still["orders"][0]["status"], "EXECUTING");
    assert_eq!(app.get("/v1/wallets/seller_a").await.status(), StatusCode::NOT_FOUND);

    assert_eq!(app.pay(url, "4242424242424242").await.status(), StatusCode::SEE_OTHER);
    let done = app.wait_until_done(checkout_id).await;
    assert_eq!(done["orders"][0]["status"], "SUCCESS");
    assert_eq!(app.get_json("/v1/wallets/seller_a").await["balances"][0]["balance"], "12.34");
}

#[tokio::test]
async fn an_expired_session_fails_its_orders_and_moves_no_money() {
    let app = spawn_app().await;
    let checkout = app.create_hosted(&[("seller_a", "5.00", "USD"), ("seller_b", "6.00", "USD")]).await;
    let url = checkout["redirect_url"].as_str().unwrap();
    let session_id = session_id_of(url);
    let expired = app.sandbox_post(&format!("/v1/checkout/sessions/{session_id}/expire"), &[]).await;
    assert_eq!(expired.status(), StatusCode::OK);

    let done = app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await;
    for order in done["orders"].as_array().unwrap() {
        assert_eq!(order["status"], "FAILED");
        assert_eq!(order["failure_code"], "expired");
        assert_eq!(order["wallet_updated"], false);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions"), 0);
    let page = app.client.get(url).send().await.unwrap();
    assert!(!page.text().await.unwrap().contains("card_number"), "no card form on an expired session");
}

#[tokio::test]
async fn commission_is_booked_to_revenue() {
    let app = crate::helpers::spawn_app_with(|s| s.fees.commission_percent = "10".parse().unwrap()).await;
    let checkout = app.create_hosted(&[("seller_a", "10.05", "USD")]).await;
    app.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await;
    // 10 % of 10.05 = 1.005, rounded half-up to 1.01.
    assert_eq!(app.get_json("/v1/wallets/seller_a").await["balances"][0]["balance"], "9.04");
    let usd = Currency::parse("USD").unwrap();
    let balance = |account: &str| app.ctx.db.read_now(|tx| ledger::account_balance(tx, account, usd)).unwrap();
    assert_eq!(balance(ledger::COMMISSION), -101);
    assert_eq!(balance(ledger::PSP_BALANCE), 1005);
}

#[tokio::test]
async fn a_cart_with_one_seller_twice_books_each_order_and_credits_the_sum() {
    let app = crate::helpers::spawn_app_with(|s| s.fees.commission_percent = "10".parse().unwrap()).await;
    let orders = [("seller_a", "10.05", "USD"), ("seller_b", "3.00", "USD"), ("seller_a", "20.00", "USD")];
    let checkout = app.create_hosted(&orders).await;
    app.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    let done = app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await;
    assert!(done["orders"].as_array().unwrap().iter().all(|o| o["status"] == "SUCCESS"), "{done}");
    // seller_a: 10.05 − 1.01 and 20.00 − 2.00; seller_b: 3.00 − 0.30.
    assert_eq!(app.get_json("/v1/wallets/seller_a").await["balances"][0]["balance"], "27.04");
    assert_eq!(app.get_json("/v1/wallets/seller_b").await["balances"][0]["balance"], "2.70");
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions WHERE source_type = 'payment_order'"), 3);
    let usd = Currency::parse("USD").unwrap();
    let balance = |account: &str| app.ctx.db.read_now(|tx| ledger::account_balance(tx, account, usd)).unwrap();
    assert_eq!(balance(ledger::COMMISSION), -331);
    assert_eq!(balance(ledger::PSP_BALANCE), 3305);
}

#[tokio::test]
async fn the_hosted_page_is_linked_at_the_sandboxs_public_url() {
    let app = spawn_app_with(|s| s.sandbox.public_url = "https://pay.shop.example/".into()).await;
    let checkout = app.create_hosted(&[("seller_a", "5.00", "USD")]).await;
    let url = checkout["redirect_url"].as_str().unwrap();
    assert!(url.starts_with("https://pay.shop.example/pay/cs_"), "{url}");

    // Bound to every interface: the link is one a browser on this machine opens.
    let app = spawn_app_with(|s| s.sandbox.bind = "0.0.0.0:0".into()).await;
    let checkout = app.create_hosted(&[("seller_a", "5.00", "USD")]).await;
    let url = checkout["redirect_url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(app.pay(url, "4242424242424242").await.status(), StatusCode::SEE_OTHER);
}
