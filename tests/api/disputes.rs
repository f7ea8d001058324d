//! Disputes (chargebacks, SPEC §3.6a) end to end: the sandbox disputes the
//! charges of Stripe's dispute test card; till learns of it from the PSP's
//! event (re-read from the PSP), books the withdrawal once (the seller's
//! share from its wallet, the fee the platform's), refuses refunds while it
//! is open, forwards the shop's evidence or acceptance, books a won
//! dispute's reinstatement once, tells the shop and a person, and
//! reconciles the PSP's `dispute` and `dispute_reversal` lines.

use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use till::ledger::{self, DISPUTE_FEES, DISPUTES, PSP_BALANCE};
use till::money::Currency;

use crate::helpers::*;

/// Disputes open 150 ms after the charge.
async fn spawn(configure: impl FnOnce(&mut till::config::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.sandbox.dispute_after_ms = 150;
        configure(s);
    })
    .await
}

fn usd(app: &TestApp, account: &str) -> i64 {
    app.ctx.db.read_now(|tx| ledger::account_balance(tx, account, Currency::parse("USD").unwrap())).unwrap()
}

impl TestApp {
    /// A token payment with the dispute test card, once paid.
    async fn disputed_token(&self, orders: &[(&str, &str, &str)]) -> Value {
        let resp = self.post_payment(&token_body("pm_card_createDispute", orders)).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let created: Value = resp.json().await.unwrap();
        self.wait_until_done(created["checkout_id"].as_str().unwrap()).await
    }

    /// The disputes of an order once there are `n`, waiting for the PSP's.
    async fn disputes_of(&self, order_id: &str, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let page = self.get_json(&format!("/v1/disputes?payment_order_id={order_id}")).await;
            let data = page["data"].as_array().unwrap().clone();
            if data.len() >= n && data.iter().all(|d| d["withdrawn_at"].is_string()) {
                return data;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no dispute on {order_id}: {page}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn wait_dispute(&self, dispute_id: &str, status: &str) -> Value {
        let started = Instant::now();
        loop {
            let dispute = self.get_json(&format!("/v1/disputes/{dispute_id}")).await;
            if dispute["status"] == status {
                return dispute;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "dispute never {status}: {dispute}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn evidence(&self, dispute_id: &str, text: &str) -> reqwest::Response {
        self.post_json(&format!("/v1/disputes/{dispute_id}/evidence"), &json!({"text": text}), None).await
    }

    fn alert_status(&self, kind: &str, subject: &str) -> Option<String> {
        self.column::<String>(&format!("SELECT status FROM alerts WHERE kind = '{kind}' AND subject_id = '{subject}'"))
            .pop()
    }

    /// Today's settlement report reconciled: the run's counts per class.
    async fn reconcile_today(&self) -> Value {
        let summary = till::reconciliation::reconcile_day(&self.ctx, Utc::now().date_naive()).await.unwrap();
        serde_json::to_value(&summary.run).unwrap()["counts"].clone()
    }
}

fn order_id(checkout: &Value, i: usize) -> String {
    checkout["orders"][i]["payment_order_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_disputed_token_payment_lost_takes_the_sellers_share_and_the_platform_pays_the_fee() {
    let app = spawn(|s| s.fees.commission_percent = "10".parse().unwrap()).await;
    let receiver = Receiver::spawn(0).await;
    app.post_json("/v1/webhook_endpoints", &json!({"url": receiver.url}), None).await;
    let paid = app.disputed_token(&[("seller_a", "25.00", "USD")]).await;
    assert_eq!(paid["status"], "succeeded");
    let order = order_id(&paid, 0);

    let disputes = app.disputes_of(&order, 1).await;
    let dispute = &disputes[0];
    let id = dispute["dispute_id"].as_str().unwrap().to_string();
    assert_eq!(dispute["status"], "needs_response", "{dispute}");
    assert_eq!((dispute["amount"].as_str(), dispute["fee"].as_str()), (Some("25.00"), Some("15.00")));
    assert_eq!(dispute["reason"], "fraudulent");
    assert_eq!(dispute["seller_amount"], "22.50", "the seller's share; the platform gives back its 2.50");
    assert!(dispute["evidence_due_by"].as_str().is_some());
    let psp_id = dispute["psp_dispute_id"].as_str().unwrap().to_string();
    assert!(psp_id.starts_with("du_"));
    assert_eq!(app.alert_status("dispute_opened", &psp_id).as_deref(), Some("open"));
    let message: String = app.value(&format!("SELECT message FROM alerts WHERE subject_id = '{psp_id}'"));
    assert!(message.contains("before 20"), "the alert says the deadline: {message}");

    // Booked once: the seller's share out of its wallet, the commission given back, the fee expensed.
    assert_eq!(app.balance("seller_a").await, "0.00");
    assert_eq!((usd(&app, DISPUTE_FEES), usd(&app, ledger::COMMISSION), usd(&app, PSP_BALANCE)), (1500, 0, -1500));
    let refund = app.refund(&order, json!({"amount": "1.00"})).await;
    assert_eq!(refund.status(), StatusCode::BAD_REQUEST);
    assert_eq!(refund.json::<Value>().await.unwrap()["error"]["code"], "charge_disputed");

    // The shop's evidence goes to the PSP, which decides (losing).
    let submitted = app.evidence(&id, "losing_evidence").await;
    assert_eq!(submitted.status(), StatusCode::OK);
    let submitted: Value = submitted.json().await.unwrap();
    assert_eq!(
        (submitted["response"].as_str(), submitted["evidence_text"].as_str()),
        (Some("evidence"), Some("losing_evidence"))
    );
    let lost = app.wait_dispute(&id, "lost").await;
    assert!(lost["closed_at"].is_string());
    assert_eq!(app.balance("seller_a").await, "0.00", "lost: the money stays with the cardholder");
    assert_eq!(app.alert_status("dispute_opened", &psp_id).as_deref(), Some("resolved"));
    assert_eq!(
        app.refund(&order, json!({"amount": "1.00"})).await.status(),
        StatusCode::BAD_REQUEST,
        "lost: no refund"
    );
    assert_eq!(app.evidence(&id, "more").await.status(), StatusCode::CONFLICT, "one answer, while it needs one");

    let events =
        receiver.wait_for("dispute.closed", |all| all.iter().any(|r| r.json()["type"] == "dispute.closed")).await;
    let created = events.iter().find(|r| r.json()["type"] == "dispute.created").unwrap().json();
    assert_eq!(created["data"]["payment_order_id"], order);
    assert_eq!(events.iter().find(|r| r.json()["type"] == "dispute.closed").unwrap().json()["data"]["status"], "lost");

    // The day's report: the charge and the dispute lines matched, nothing unclassified.
    let counts = app.reconcile_today().await;
    assert_eq!(counts["unclassified"], 0, "{counts}");
    assert_eq!(counts["matched"], 2, "the charge and its dispute: {counts}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM reconciliation_items WHERE record_type = 'dispute' AND class = 'matched'"),
        1
    );
}

#[tokio::test]
async fn a_disputed_hosted_payment_won_gives_each_order_its_part_back() {
    let app = spawn(|_| {}).await;
    let checkout = app.create_hosted(&[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    let paid = app.pay(checkout["redirect_url"].as_str().unwrap(), "4000000000000259").await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER, "the dispute card pays");
    let done = app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await;
    let (a, b) = (app.disputes_of(&order_id(&done, 0), 1).await, app.disputes_of(&order_id(&done, 1), 1).await);
    let (a, b) = (&a[0], &b[0]);
    assert_eq!(a["psp_dispute_id"], b["psp_dispute_id"], "one PSP dispute of the one charge, shared by its orders");
    assert_eq!(
        (a["amount"].as_str(), a["fee"].as_str()),
        (Some("25.00"), Some("15.00")),
        "the first order bears the fee"
    );
    assert_eq!((b["amount"].as_str(), b["fee"].as_str()), (Some("10.00"), Some("0.00")));
    assert_eq!((app.balance("seller_a").await, app.balance("seller_b").await), ("0.00".into(), "0.00".into()));

    let id = a["dispute_id"].as_str().unwrap();
    assert_eq!(app.evidence(id, "winning_evidence").await.status(), StatusCode::OK);
    app.wait_dispute(id, "won").await;
    let b_won = app.wait_dispute(b["dispute_id"].as_str().unwrap(), "won").await;
    assert!(b_won["reinstated_at"].is_string(), "{b_won}");
    assert_eq!((app.balance("seller_a").await, app.balance("seller_b").await), ("25.00".into(), "10.00".into()));
    assert_eq!((usd(&app, DISPUTE_FEES), usd(&app, PSP_BALANCE)), (1500, 3500 - 1500), "the fee is not given back");
    let refund = app.refund(&order_id(&done, 1), json!({"amount": "1.00"})).await;
    assert_eq!(refund.status(), StatusCode::CREATED, "a won dispute no longer stops refunds");
    let refund: Value = refund.json().await.unwrap();
    app.wait_refund(refund["refund_id"].as_str().unwrap()).await;

    let counts = app.reconcile_today().await;
    assert_eq!(counts["unclassified"], 0, "{counts}");
    for kind in ["dispute", "dispute_reversal"] {
        let matched = app.count(&format!(
            "SELECT COUNT(*) FROM reconciliation_items WHERE record_type = '{kind}' AND class = 'matched'"
        ));
        assert_eq!(matched, 1, "{kind}: {counts}");
    }
    // Fees booked from the file: till's PSP balance is now the PSP's (no payout to the bank yet today).
    let psp_net = app.ctx.db.read_now(|tx| {
        tx.query_value::<i64>("SELECT COALESCE(SUM(net_minor), 0) FROM settlement_rows", till::db::params![])
    });
    assert_eq!(usd(&app, PSP_BALANCE), psp_net.unwrap(), "till's books agree with the PSP's balance");
}

#[tokio::test]
async fn a_dispute_of_money_paid_out_leaves_a_debt_that_later_payins_repay() {
    let app = spawn(|_| {}).await;
    let seller = json!({"name": "Seller A", "payout_destination": "acct_seller_a"});
    let put = app.client.put(format!("{}/v1/sellers/seller_a", app.address)).bearer_auth(&app.api_key).json(&seller);
    assert!(put.send().await.unwrap().status().is_success());
    // Paid and paid out before the PSP disputes it (the dispute comes 150 ms later).
    let resp = app.post_payment(&token_body("pm_card_createDispute", &[("seller_a", "20.00", "USD")])).await;
    let checkout: Value = resp.json().await.unwrap();
    let done = app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await;
    let payout = app.post_json("/v1/payouts", &json!({"seller_id": "seller_a", "currency": "USD"}), None).await;
    assert_eq!(payout.status(), StatusCode::CREATED);
    let dispute = app.disputes_of(&order_id(&done, 0), 1).await.remove(0);

    let wallet = app.get_json("/v1/wallets/seller_a").await;
    assert_eq!(
        (wallet["balances"][0]["balance"].as_str(), wallet["balances"][0]["debt"].as_str()),
        (Some("-20.00"), Some("20.00"))
    );
    let refused = app
        .post_json("/v1/payouts", &json!({"seller_id": "seller_a", "currency": "USD", "amount": "1.00"}), None)
        .await;
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "seller_in_debt");
    let report = app.ctx.db.read_snapshot(till::ledger::check::run).unwrap();
    assert!(report.ok, "a dispute's debt is allowed: {}", report.summary());
    assert!(report.notes.iter().any(|n| n.contains("seller_a") && n.contains("owes")), "{:?}", report.notes);

    // The next pay-in repays it.
    let resp = app.post_payment(&token_body("pm_card_visa", &[("seller_a", "30.00", "USD")])).await;
    let next: Value = resp.json().await.unwrap();
    app.wait_until_done(next["checkout_id"].as_str().unwrap()).await;
    assert_eq!(app.balance("seller_a").await, "10.00");

    // Accepting it: the PSP closes it lost, till says accepted.
    let id = dispute["dispute_id"].as_str().unwrap();
    let accepted = app.post_json(&format!("/v1/disputes/{id}/accept"), &json!({}), None).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(accepted.json::<Value>().await.unwrap()["status"], "accepted");
    assert_eq!(
        app.evidence(id, "winning_evidence").await.status(),
        StatusCode::CONFLICT,
        "never evidence after acceptance"
    );
}

#[tokio::test]
async fn the_platform_bears_disputes_when_sellers_are_not_liable() {
    let app = spawn(|s| s.disputes.seller_liable = false).await;
    let paid = app.disputed_token(&[("seller_a", "12.00", "USD")]).await;
    let dispute = app.disputes_of(&order_id(&paid, 0), 1).await.remove(0);
    assert_eq!((dispute["seller_liable"].as_bool(), dispute["seller_amount"].as_str()), (Some(false), Some("0.00")));
    assert_eq!(app.balance("seller_a").await, "12.00", "the seller keeps its money");
    assert_eq!((usd(&app, DISPUTES), usd(&app, DISPUTE_FEES)), (1200, 1500));
}

#[tokio::test]
async fn answers_to_disputes_are_checked_and_refused_clearly() {
    let app = spawn(|_| {}).await;
    let paid = app.disputed_token(&[("seller_a", "6.00", "USD")]).await;
    let id = app.disputes_of(&order_id(&paid, 0), 1).await[0]["dispute_id"].as_str().unwrap().to_string();
    for (body, param) in [
        (json!({"text": ""}), Some("text")),
        (json!({"text": "x".repeat(20_001)}), Some("text")),
        (json!({"text": "bell\u{7}"}), Some("text")),
        (json!({}), Some("text")),
        (json!({"text": "a", "extra": 1}), None),
    ] {
        let resp = app.post_json(&format!("/v1/disputes/{id}/evidence"), &body, None).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = resp.json().await.unwrap();
        if let Some(param) = param {
            assert_eq!(error["error"]["param"], param, "{error}");
        }
    }
    assert_eq!(app.get_json(&format!("/v1/disputes/{id}")).await["status"], "needs_response", "nothing was sent");
    assert_eq!(app.evidence(&uuid(), "text").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/v1/disputes/{}", uuid())).await.status(), StatusCode::NOT_FOUND);
    let bad: Value = app.get("/v1/disputes?status=open").await.json().await.unwrap();
    assert_eq!(bad["error"]["param"], "status", "{bad}");
    let listed = app.get_json("/v1/disputes?status=needs_response&limit=1").await;
    assert_eq!(listed["data"][0]["dispute_id"], id);

    // Other text stays under review; the same evidence again is the same answer.
    assert_eq!(app.evidence(&id, "Shipped with tracking 1Z999.").await.status(), StatusCode::OK);
    app.wait_dispute(&id, "under_review").await;
    assert_eq!(app.evidence(&id, "Shipped with tracking 1Z999.").await.status(), StatusCode::OK, "a retry");
    assert_eq!(app.evidence(&id, "Other words.").await.status(), StatusCode::CONFLICT, "another answer");
    let accept = app.post_json(&format!("/v1/disputes/{id}/accept"), &json!({}), None).await;
    assert_eq!(accept.status(), StatusCode::CONFLICT, "answered already");
}
