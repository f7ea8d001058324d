//! Reconciliation against the PSP's settlement files: the day's report fixes
//! lost webhooks and books the PSP's fees and payouts; crafted files show
//! each class, with its rule and both sides, in the exception queue until a
//! person resolves it; a bad file is refused whole; a file imported twice
//! changes nothing.
//!
//! Day boundaries: the sandbox books its daily payout to the bank only once
//! a UTC day is over (its ticker, at the first tick after midnight). The
//! end-to-end tests therefore reconcile *today's* report, which holds the
//! charges and their fees but no payout yet, and the payout is exercised by
//! appending the line the sandbox would write at 23:59:59 to today's real
//! report. A test that straddles midnight reconciles both days.

use std::process::{Command, Output};

use chrono::{NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use till::ledger::{self, BANK, PSP_BALANCE, PSP_FEES};
use till::money::Currency;
use till::reconciliation::{self, RunSummary};

use crate::helpers::{OnDatabase, TestApp, spawn_app, spawn_app_with, token_body, uuid};

const HEADER: &str = "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,\
                      source_id,payment_intent_id,description,payment_metadata[checkout_id],\
                      payment_metadata[payment_order_id]";

/// One line of a crafted file: (bt id, category, currency, gross, fee, net, source, intent, checkout, order).
pub type Line<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

pub fn crafted(lines: &[Line]) -> String {
    let now = Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    let mut csv = format!("{HEADER}\r\n");
    for (bt, category, currency, gross, fee, net, source, intent, checkout, order) in lines {
        csv.push_str(&format!(
            "{bt},{now},{now},{currency},{gross},{fee},{net},{category},{source},{intent},crafted,{checkout},{order}\r\n"
        ));
    }
    csv
}

fn text(app: &TestApp, sql: &str) -> String {
    app.value(sql)
}

fn balance(app: &TestApp, account: &str) -> i64 {
    app.ctx.db.read_now(|tx| ledger::account_balance(tx, account, Currency::parse("USD").unwrap())).unwrap()
}

async fn upload(app: &TestApp, csv: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/reconciliation/files", app.address))
        .bearer_auth(&app.api_key)
        .header("Content-Type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap()
}

async fn upload_ok(app: &TestApp, csv: &str) -> Value {
    let resp = upload(app, csv).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

/// The sandbox's report of one day, as its raw CSV.
async fn report(app: &TestApp, day: NaiveDate) -> String {
    let resp = app
        .client
        .get(format!("{}/v1/sandbox/settlement_reports/{day}", app.sandbox))
        .bearer_auth(&app.settings.psp.secret_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.unwrap()
}

/// Sum of one amount column (USD minor units) over a report's lines, found by header name.
fn column_sum(csv: &str, column: &str) -> i64 {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == column).unwrap();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cell = l.split(',').nth(at).unwrap();
            let minor =
                till::money::parse_minor(cell.trim_start_matches('-'), Currency::parse("USD").unwrap()).unwrap();
            if cell.starts_with('-') { -minor } else { minor }
        })
        .sum()
}

/// Reconciles every UTC day from `first` to today (one, unless the test crossed midnight).
async fn reconcile_since(app: &TestApp, first: NaiveDate) -> Vec<RunSummary> {
    let mut runs = Vec::new();
    let mut day = first;
    while day <= today() {
        runs.push(reconciliation::reconcile_day(&app.ctx, day).await.unwrap());
        day = day.succ_opt().unwrap();
    }
    runs
}

fn count_of(summary: &Value, class: &str) -> i64 {
    summary["run"]["counts"][class].as_i64().unwrap()
}

async fn paid_hosted(app: &TestApp, orders: &[(&str, &str, &str)]) -> Value {
    let checkout = app.create_hosted(orders).await;
    let paid = app.pay(checkout["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    app.wait_until_done(checkout["checkout_id"].as_str().unwrap()).await
}

async fn paid_token(app: &TestApp, orders: &[(&str, &str, &str)]) -> Value {
    let resp = app.post_payment(&token_body("pm_card_visa", orders)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    app.wait_until_done(created["checkout_id"].as_str().unwrap()).await
}

fn intent_of(app: &TestApp, checkout_id: &str) -> String {
    text(app, &format!("SELECT psp_payment_intent_id FROM payment_orders WHERE checkout_id = '{checkout_id}'"))
}

#[tokio::test]
async fn the_days_report_fixes_lost_webhooks_and_books_the_fees() {
    // Arrange: the PSP loses every webhook; a buyer pays on the hosted page,
    // and a shop charges a saved card for two sellers.
    let app = spawn_app().await;
    let first_day = today();
    app.set_faults(json!({"webhook_drop_rate": 1.0})).await;
    let hosted = app.create_hosted(&[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    let paid = app.pay(hosted["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    let token = paid_token(&app, &[("seller_a", "7.50", "USD"), ("seller_c", "12.00", "USD")]).await;
    let hosted_id = hosted["checkout_id"].as_str().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = app.get_json(&format!("/v1/checkouts/{hosted_id}")).await;
    assert_eq!(before["orders"][0]["status"], "EXECUTING", "the webhook was lost");

    // Act: the nightly job's work, on today's report.
    let runs = reconcile_since(&app, first_day).await;

    // Assert: every order SUCCESS, each charge matched, nothing left for a person.
    let after = app.get_json(&format!("/v1/checkouts/{hosted_id}")).await;
    for order in after["orders"].as_array().unwrap().iter().chain(token["orders"].as_array().unwrap()) {
        let order = app.get_json(&format!("/v1/payments/{}", order["payment_order_id"].as_str().unwrap())).await;
        assert_eq!(order["status"], "SUCCESS", "{order}");
        assert_eq!(order["ledger_updated"], true);
    }
    let matched: i64 = runs.iter().map(|r| r.run.counts["matched"]).sum();
    let fixed: i64 = runs.iter().map(|r| r.run.auto_fixed).sum();
    let fees: i64 = runs.iter().map(|r| r.run.fees_booked).sum();
    assert_eq!((matched, fixed, fees), (3, 1, 3), "{runs:?}");
    for r in &runs {
        assert_eq!(r.run.open_exceptions, 0, "{r:?}");
        assert_eq!(r.run.status, "done");
    }
    let queue = app.get_json("/v1/reconciliation/exceptions").await;
    assert_eq!(queue["data"], json!([]), "nothing in the exception queue");
    let rules = "SELECT first_rule || ' -> ' || rule FROM reconciliation_items WHERE first_class = 'missing_in_till'";
    assert_eq!(
        text(&app, rules),
        "charge.metadata_checkout_id/not_final_in_till -> charge.payment_intent_id/same_amount",
        "both decisions keep their rule"
    );

    // The PSP's fees are booked, and till's PSP balance is the PSP's.
    let mut psp_fees = 0;
    let mut psp_net = 0;
    for day in (0..runs.len() as u64).map(|i| first_day + chrono::Days::new(i)) {
        let csv = report(&app, day).await;
        psp_fees += column_sum(&csv, "fee");
        psp_net += column_sum(&csv, "net");
    }
    assert!(psp_fees > 0);
    assert_eq!(balance(&app, PSP_FEES), psp_fees);
    assert_eq!(balance(&app, PSP_BALANCE), psp_net, "assets:psp_balance equals the PSP's balance");
    let listed = app.get_json("/v1/reconciliation/runs").await;
    assert_eq!(listed["data"][0]["source"], "scheduled");
    app.assert_ledger_ok();
}

#[tokio::test]
async fn a_payout_to_the_bank_moves_the_days_net_out_of_the_psp_balance() {
    let app = spawn_app().await;
    let day = today();
    paid_hosted(&app, &[("seller_a", "25.00", "USD")]).await;
    paid_token(&app, &[("seller_b", "10.00", "USD")]).await;
    let first = reconciliation::reconcile_day(&app.ctx, day).await.unwrap();
    assert_eq!(first.run.counts["matched"], 2, "{first:?}");

    // The line the sandbox books at 23:59:59 once the day is over.
    let csv = report(&app, day).await;
    let net = column_sum(&csv, "net");
    let major = till::money::format_minor(net, Currency::parse("USD").unwrap());
    let payout = format!(
        "txn_payout_{day},{day} 23:59:59,{day} 23:59:59,usd,-{major},0.00,-{major},payout,po_{day},,STRIPE PAYOUT,,\r\n"
    );
    let finished_day = format!("{csv}{payout}");
    let second = upload_ok(&app, &finished_day).await;

    assert_eq!(second["run"]["rows_skipped"], 2, "the charges were imported before");
    assert_eq!((count_of(&second, "matched"), second["run"]["payouts_booked"].as_i64()), (1, Some(1)));
    assert_eq!(balance(&app, BANK), net);
    assert_eq!(balance(&app, PSP_BALANCE), column_sum(&finished_day, "net"), "the PSP's balance after its payout");
    assert_eq!(balance(&app, PSP_BALANCE), 0);
}

#[tokio::test]
async fn each_class_from_a_crafted_file_waits_in_the_exception_queue() {
    // Arrange: three paid hosted checkouts till knows.
    let app = spawn_app().await;
    let id = |v: Value| v["checkout_id"].as_str().unwrap().to_string();
    let a = id(paid_hosted(&app, &[("seller_a", "25.00", "USD")]).await);
    let b = id(paid_hosted(&app, &[("seller_a", "10.00", "USD")]).await);
    let c = id(paid_hosted(&app, &[("seller_a", "5.00", "USD")]).await);
    let (pa, pb, pc) = (intent_of(&app, &a), intent_of(&app, &b), intent_of(&app, &c));
    let stranger = uuid();
    let csv = crafted(&[
        ("txn_a", "charge", "usd", "25.00", "1.03", "23.97", "ch_a", &pa, &a, ""),
        ("txn_b", "charge", "usd", "12.00", "0.65", "11.35", "ch_b", &pb, &b, ""),
        ("txn_c", "charge", "eur", "5.00", "0.45", "4.55", "ch_c", &pc, &c, ""),
        ("txn_x", "charge", "usd", "99.00", "3.17", "95.83", "ch_x", "pi_unknown", &stranger, ""),
        ("txn_a", "charge", "usd", "25.00", "1.03", "23.97", "ch_a", &pa, &a, ""),
        ("txn_a2", "charge", "usd", "25.00", "1.03", "23.97", "ch_a", &pa, &a, ""),
        ("txn_adj", "adjustment", "usd", "-1.00", "0.00", "-1.00", "adj_1", "", "", ""),
    ]);

    // Act
    let summary = upload_ok(&app, &csv).await;

    // Assert: one decision per line, each with its rule and both sides.
    let expected = [
        ("matched", 1),
        ("amount_mismatch", 1),
        ("currency_mismatch", 1),
        ("missing_in_till", 1),
        ("missing_in_psp", 0),
        ("duplicate_in_file", 2),
        ("unclassified", 1),
    ];
    for (class, n) in expected {
        assert_eq!(count_of(&summary, class), n, "{class}: {summary}");
    }
    assert_eq!(summary["run"]["open_exceptions"], 6);
    let queue = app.get_json("/v1/reconciliation/exceptions?limit=100").await;
    let by_line =
        |line: i64| queue["data"].as_array().unwrap().iter().find(|e| e["psp"]["line"] == line).cloned().unwrap();
    let mismatch = by_line(3);
    assert_eq!(
        (mismatch["class"].as_str(), mismatch["rule"].as_str()),
        (Some("amount_mismatch"), Some("charge.payment_intent_id/amount_differs"))
    );
    assert_eq!(
        (mismatch["psp"]["gross"].as_str(), mismatch["till"]["amount"].as_str()),
        (Some("12.00"), Some("10.00"))
    );
    assert_eq!(mismatch["till"]["record_id"], b.as_str());
    let currency = by_line(4);
    assert_eq!(
        (currency["class"].as_str(), currency["psp"]["currency"].as_str(), currency["till"]["currency"].as_str()),
        (Some("currency_mismatch"), Some("EUR"), Some("USD"))
    );
    let unknown = by_line(5);
    assert_eq!(
        (unknown["class"].as_str(), unknown["rule"].as_str()),
        (Some("missing_in_till"), Some("charge.unknown_to_till"))
    );
    assert!(unknown["fix"].as_str().unwrap().contains("refused"), "the PSP was asked: {unknown}");
    let repeated = by_line(6);
    assert_eq!(
        (repeated["class"].as_str(), repeated["rule"].as_str()),
        (Some("duplicate_in_file"), Some("balance_transaction_id.repeated_in_file"))
    );
    assert_eq!(by_line(7)["rule"], "source_id.repeated");
    assert_eq!(
        (by_line(8)["class"].as_str(), by_line(8)["rule"].as_str()),
        (Some("unclassified"), Some("category.unknown"))
    );
    let unbooked = "SELECT COUNT(*) FROM ledger_transactions WHERE source_id IN ('txn_x', 'txn_a2', 'txn_adj')";
    assert_eq!(app.count(unbooked), 0, "lines nobody recognises book nothing");

    // A person resolves one, with a note; it leaves the open queue.
    let id = mismatch["id"].as_i64().unwrap();
    let path = format!("/v1/reconciliation/exceptions/{id}/resolve");
    assert_eq!(app.post_json(&path, &json!({"note": "  "}), None).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.post_json(&path, &json!({}), None).await.status(), StatusCode::BAD_REQUEST);
    let note = "PSP confirmed a 2.00 surcharge";
    let resolved = app.post_json(&path, &json!({"note": note}), Some("k1")).await;
    assert_eq!(resolved.status(), StatusCode::OK);
    let resolved: Value = resolved.json().await.unwrap();
    assert_eq!((resolved["status"].as_str(), resolved["note"].as_str()), (Some("resolved"), Some(note)));
    assert_eq!(app.post_json(&path, &json!({"note": "again"}), None).await.status(), StatusCode::BAD_REQUEST);
    let replay = app.post_json(&path, &json!({"note": note}), Some("k1")).await;
    assert_eq!(replay.headers().get("Idempotent-Replayed").unwrap(), "true");
    let missing = app.post_json("/v1/reconciliation/exceptions/999999/resolve", &json!({"note": "x"}), None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let open = app.get_json("/v1/reconciliation/exceptions?limit=100").await;
    assert_eq!(open["data"].as_array().unwrap().len(), 5);
    let done = app.get_json("/v1/reconciliation/exceptions?status=resolved").await;
    assert_eq!(done["data"][0]["id"], id);
    assert_eq!(app.get("/v1/reconciliation/exceptions?status=nope").await.status(), StatusCode::BAD_REQUEST);

    // Cursor pagination.
    let page = app.get_json("/v1/reconciliation/exceptions?limit=2").await;
    assert_eq!((page["data"].as_array().unwrap().len(), page["has_more"].as_bool()), (2, Some(true)));
    let rest = format!("/v1/reconciliation/exceptions?limit=100&starting_after={}", page["data"][1]["id"]);
    assert_eq!(app.get_json(&rest).await["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_till_record_is_matched_at_most_once_by_the_database() {
    let app = spawn_app().await;
    let a = paid_hosted(&app, &[("seller_a", "25.00", "USD")]).await;
    let a = a["checkout_id"].as_str().unwrap().to_string();
    upload_ok(&app, &crafted(&[("txn_1", "charge", "usd", "25.00", "1.03", "23.97", "ch_1", "", &a, "")])).await;
    // A line of another file for the same checkout is a duplicate, not a second match.
    let other = crafted(&[("txn_2", "charge", "usd", "25.00", "1.03", "23.97", "ch_2", "", &a, "")]);
    let second = upload_ok(&app, &other).await;
    assert_eq!(count_of(&second, "duplicate_in_file"), 1, "{second}");
    assert_eq!(
        text(&app, "SELECT rule FROM reconciliation_items WHERE class = 'duplicate_in_file'"),
        "record.already_matched"
    );

    // And the database refuses a second claim even if the code forgot.
    app.execute(
        "INSERT INTO settlement_rows (file_id, line, balance_transaction_id, created_utc, currency, gross_minor,
             fee_minor, net_minor, reporting_category) VALUES (1, 99, 'txn_f', 'now', 'USD', 1, 0, 1, 'charge')",
    )
    .unwrap();
    let err = app
        .ctx
        .db
        .write_now(|tx| {
            tx.execute(
                "INSERT INTO reconciliation_items (row_id, class, first_class, rule, first_rule, record_type, record_id,
                                                   status, created_at, updated_at)
                 SELECT id, 'matched', 'matched', 'forged', 'forged', 'checkout', $1, 'none', 'now', 'now'
                 FROM settlement_rows WHERE balance_transaction_id = 'txn_f'",
                till::db::params![a],
            )
        })
        .unwrap_err();
    // The engine's own word for it (SQLite says "UNIQUE constraint failed",
    // PostgreSQL "violates unique constraint").
    assert!(till::db::is_unique_violation(&err), "{err:#}");
}

async fn put_seller(app: &TestApp, id: &str) {
    let resp = app
        .client
        .put(format!("{}/v1/sellers/{id}", app.address))
        .bearer_auth(&app.api_key)
        .json(&json!({"name": format!("Seller {id}"), "payout_destination": "acct_ok"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
}

async fn refund_and_payout(app: &TestApp, order_id: &str, seller: &str) -> (String, String) {
    let refund = app.refund(order_id, json!({"amount": "5.00"})).await;
    assert_eq!(refund.status(), StatusCode::CREATED);
    let refund: Value = refund.json().await.unwrap();
    let payout = app.post_json("/v1/payouts", &json!({"seller_id": seller, "currency": "USD"}), None).await;
    assert_eq!(payout.status(), StatusCode::CREATED, "{}", payout.text().await.unwrap());
    let payout: Value = payout.json().await.unwrap();
    (refund["refund_id"].as_str().unwrap().into(), payout["payout_id"].as_str().unwrap().into())
}

/// Polls till until the refund and the payout are final.
async fn wait_final(app: &TestApp, refund_id: &str, payout_id: &str) -> (Value, Value) {
    let started = std::time::Instant::now();
    loop {
        let refund = app.get_json(&format!("/v1/refunds/{refund_id}")).await;
        let payout = app.get_json(&format!("/v1/payouts/{payout_id}")).await;
        if refund["status"] != "PENDING" && (payout["status"] == "PAID" || payout["status"] == "FAILED") {
            return (refund, payout);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "never final: {refund} {payout}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn refunds_and_payouts_in_the_days_report_are_matched_by_their_psp_ids() {
    let app = spawn_app_with(|s| {
        s.queue.backoff_base_ms = 20;
        s.queue.backoff_cap_ms = 200;
        s.queue.max_attempts = 100;
    })
    .await;
    let first_day = today();
    put_seller(&app, "seller_a").await;
    let paid = paid_token(&app, &[("seller_a", "25.00", "USD")]).await;
    let order = paid["orders"][0]["payment_order_id"].as_str().unwrap();
    let (refund_id, payout_id) = refund_and_payout(&app, order, "seller_a").await;
    let (refund, payout) = wait_final(&app, &refund_id, &payout_id).await;
    assert_eq!((refund["status"].as_str(), payout["status"].as_str()), (Some("SUCCEEDED"), Some("PAID")));

    let runs = reconcile_since(&app, first_day).await;

    let rules: Vec<String> = app.column("SELECT rule FROM reconciliation_items ORDER BY rule");
    assert_eq!(
        rules,
        [
            "charge.metadata_payment_order_id/same_amount",
            "refund.psp_refund_id/same_amount",
            "transfer.psp_transfer_id/same_amount",
        ],
        "{runs:?}"
    );
    assert!(runs.iter().all(|r| r.run.open_exceptions == 0), "{runs:?}");
    let mut psp_net = 0;
    for day in (0..runs.len() as u64).map(|i| first_day + chrono::Days::new(i)) {
        psp_net += column_sum(&report(&app, day).await, "net");
    }
    assert_eq!(balance(&app, PSP_BALANCE), psp_net, "assets:psp_balance equals the PSP's balance");
}

#[tokio::test]
async fn a_refund_and_a_payout_whose_answers_were_lost_are_fixed_by_asking_the_psp() {
    // Arrange: webhooks are lost and each job gives up after its first try
    // (the PSP answered "pending"), so till keeps the refund and the payout
    // unfinished, without their PSP ids, while the PSP settles both.
    let app = spawn_app_with(|s| s.queue.max_attempts = 1).await;
    let first_day = today();
    app.set_faults(json!({"webhook_drop_rate": 1.0})).await;
    put_seller(&app, "seller_a").await;
    let paid = paid_token(&app, &[("seller_a", "25.00", "USD")]).await;
    let order = paid["orders"][0]["payment_order_id"].as_str().unwrap();
    let (refund_id, payout_id) = refund_and_payout(&app, order, "seller_a").await;
    // The PSP settles both (its own books, read directly: it has no list API).
    let sandbox = app.settings.sandbox.database_path.clone();
    wait_at_psp(&sandbox, "SELECT COUNT(*) FROM refunds WHERE status = 'succeeded'").await;
    wait_at_psp(&sandbox, "SELECT COUNT(*) FROM transfers WHERE status = 'paid'").await;
    assert_eq!(app.get_json(&format!("/v1/refunds/{refund_id}")).await["status"], "PENDING");
    let waiting = app.get_json(&format!("/v1/payouts/{payout_id}")).await;
    assert!(waiting["status"] == "PENDING" || waiting["status"] == "IN_TRANSIT", "{waiting}");

    // Act
    let runs = reconcile_since(&app, first_day).await;

    // Assert
    assert_eq!(app.get_json(&format!("/v1/refunds/{refund_id}")).await["status"], "SUCCEEDED");
    assert_eq!(app.get_json(&format!("/v1/payouts/{payout_id}")).await["status"], "PAID");
    let fixed: i64 = runs.iter().map(|r| r.run.auto_fixed).sum();
    assert_eq!(fixed, 2, "{runs:?}");
    let decisions: Vec<String> = app.column(
        "SELECT first_rule || ' -> ' || rule FROM reconciliation_items WHERE first_class = 'missing_in_till'
         ORDER BY first_rule",
    );
    assert_eq!(
        decisions,
        [
            "refund.psp_refund_id/not_final_in_till -> refund.psp_refund_id/same_amount",
            "transfer.psp_transfer_id/not_final_in_till -> transfer.psp_transfer_id/same_amount"
        ]
    );
    assert_eq!(app.get_json("/v1/reconciliation/exceptions").await["data"], json!([]));
    let mut psp_net = 0;
    for day in (0..runs.len() as u64).map(|i| first_day + chrono::Days::new(i)) {
        psp_net += column_sum(&report(&app, day).await, "net");
    }
    assert_eq!(balance(&app, PSP_BALANCE), psp_net);
}

/// Waits until a count in the sandbox's own database is 1.
async fn wait_at_psp(sandbox_db: &std::path::Path, sql: &str) {
    let started = std::time::Instant::now();
    loop {
        let n: i64 = rusqlite::Connection::open(sandbox_db).unwrap().query_row(sql, [], |r| r.get(0)).unwrap();
        if n == 1 {
            return;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "never at the PSP: {sql}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_till_record_no_file_mentions_is_missing_in_psp_after_the_grace_period() {
    let app = spawn_app_with(|s| s.reconciliation.grace_days = 0).await;
    let paid = paid_hosted(&app, &[("seller_a", "25.00", "USD")]).await;
    let checkout = paid["checkout_id"].as_str().unwrap().to_string();
    // A file that reports on today and does not mention the checkout.
    let fee_only = crafted(&[("txn_fee", "fee", "usd", "-0.50", "0.00", "-0.50", "fee_1", "", "", "")]);
    let first = upload_ok(&app, &fee_only).await;
    assert_eq!(count_of(&first, "missing_in_psp"), 1, "{first}");
    let queue = app.get_json("/v1/reconciliation/exceptions").await;
    let missing = &queue["data"][0];
    assert_eq!(
        (missing["class"].as_str(), missing["till"]["record_id"].as_str()),
        (Some("missing_in_psp"), Some(checkout.as_str()))
    );
    assert_eq!(missing["rule"], "checkout.not_in_any_file_after_0_days");
    assert_eq!(missing["psp"], Value::Null);
    assert_eq!(balance(&app, PSP_FEES), 50, "a fee line is booked");

    // The next file has it: matched, and the exception resolves itself.
    let pi = intent_of(&app, &checkout);
    let later = crafted(&[("txn_late", "charge", "usd", "25.00", "1.03", "23.97", "ch_late", &pi, &checkout, "")]);
    let second = upload_ok(&app, &later).await;
    assert_eq!((count_of(&second, "matched"), count_of(&second, "missing_in_psp")), (1, 0));
    let resolved = app.get_json("/v1/reconciliation/exceptions?status=resolved").await;
    assert_eq!(resolved["data"][0]["resolved_by"], "reconciliation");
    assert!(resolved["data"][0]["note"].as_str().unwrap().contains("txn_late"), "{resolved}");
    assert_eq!(app.get_json("/v1/reconciliation/exceptions").await["data"], json!([]));
}

#[tokio::test]
async fn importing_the_same_file_twice_changes_nothing() {
    let app = spawn_app().await;
    let day = today();
    paid_hosted(&app, &[("seller_a", "25.00", "USD")]).await;
    let csv = report(&app, day).await;
    let first = upload_ok(&app, &csv).await;
    let state = |app: &TestApp| {
        [
            "SELECT COUNT(*) FROM ledger_transactions",
            "SELECT COUNT(*) FROM reconciliation_items",
            "SELECT COUNT(*) FROM settlement_files",
            "SELECT COUNT(*) FROM reconciliation_runs",
        ]
        .map(|sql| app.count(sql))
    };
    let before = state(&app);
    let again = upload(&app, &csv).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["already_imported"], true);
    assert_eq!(again["run"]["id"], first["run"]["id"]);
    let fetched = reconciliation::reconcile_day(&app.ctx, day).await.unwrap();
    assert!(fetched.already_imported, "the same report fetched by the nightly job");
    assert_eq!(state(&app), before);
    let runs = app.get_json("/v1/reconciliation/runs").await;
    assert_eq!(runs["data"].as_array().unwrap().len(), 1);
    assert_eq!(runs["data"][0]["counts"]["matched"], 1);
}

#[tokio::test]
async fn an_unparseable_amount_refuses_the_whole_file_with_its_line() {
    let app = spawn_app().await;
    let a = paid_hosted(&app, &[("seller_a", "25.00", "USD")]).await;
    let a = a["checkout_id"].as_str().unwrap().to_string();
    let csv = crafted(&[
        ("txn_1", "charge", "usd", "25.00", "1.03", "23.97", "ch_1", "", &a, ""),
        ("txn_2", "fee", "usd", "-1.O0", "0.00", "-1.00", "fee_1", "", "", ""),
    ]);
    let ledger_before = app.count("SELECT COUNT(*) FROM ledger_transactions");

    let resp = upload(&app, &csv).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["param"].as_str()),
        (Some("settlement_file_invalid"), Some("gross"))
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("line 3, column 5 (gross)"), "{body}");

    let file = app.dir.path().join("bad.csv");
    std::fs::write(&file, &csv).unwrap();
    let out = till(&app, &["reconcile", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3, column 5 (gross)") && err.contains("-1.O0"), "{err}");

    assert_eq!(app.count("SELECT COUNT(*) FROM settlement_files"), 0, "nothing stored");
    assert_eq!(app.count("SELECT COUNT(*) FROM reconciliation_items"), 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions"), ledger_before, "nothing booked");
}

fn till(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_till"))
        .args(args)
        .args(["--config", crate::helpers::empty_config()])
        .on_database(&app.settings.database)
        .env("TILL_PSP__API_BASE", &app.sandbox)
        .env("TILL_LOG__LEVEL", "error")
        .output()
        .unwrap()
}

#[tokio::test]
async fn till_reconcile_prints_the_count_per_class() {
    let app = spawn_app().await;
    app.set_faults(json!({"webhook_drop_rate": 1.0})).await;
    let hosted = app.create_hosted(&[("seller_a", "25.00", "USD")]).await;
    app.pay(hosted["redirect_url"].as_str().unwrap(), "4242424242424242").await;
    let file = app.dir.path().join("report.csv");
    std::fs::write(&file, report(&app, today()).await).unwrap();

    let out = till(&app, &["reconcile", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("report.csv"), "{printed}");
    assert!(printed.contains("matched            1"), "{printed}");
    assert!(printed.contains("missing_in_till    0"), "{printed}");
    assert!(printed.contains("fixed automatically 1"), "{printed}");
    let order = hosted["orders"][0]["payment_order_id"].as_str().unwrap();
    assert_eq!(app.get_json(&format!("/v1/payments/{order}")).await["status"], "SUCCESS", "the CLI asked the PSP");

    let twice = till(&app, &["reconcile", file.to_str().unwrap()]);
    assert_eq!(twice.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&twice.stdout).contains("nothing changed"));
}

#[tokio::test]
async fn concurrent_uploads_of_one_file_import_it_once() {
    let app = spawn_app().await;
    paid_hosted(&app, &[("seller_a", "25.00", "USD")]).await;
    paid_token(&app, &[("seller_b", "10.00", "USD")]).await;
    let csv = report(&app, today()).await;
    let (first, second, third) = tokio::join!(upload(&app, &csv), upload(&app, &csv), upload(&app, &csv));
    let mut statuses = [first.status(), second.status(), third.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::OK, StatusCode::CREATED]);
    assert_eq!(app.count("SELECT COUNT(*) FROM reconciliation_runs"), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM reconciliation_items WHERE class = 'matched'"), 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions WHERE source_type = 'settlement_fee'"), 2);
}

#[tokio::test]
async fn the_reconciliation_routes_are_described_and_need_a_key() {
    let app = spawn_app().await;
    let doc: Value =
        app.client.get(format!("{}/v1/openapi.json", app.address)).send().await.unwrap().json().await.unwrap();
    for (path, method) in [
        ("/v1/reconciliation/files", "post"),
        ("/v1/reconciliation/runs", "get"),
        ("/v1/reconciliation/exceptions", "get"),
        ("/v1/reconciliation/exceptions/{id}/resolve", "post"),
    ] {
        assert!(doc["paths"][path][method]["responses"].is_object(), "{method} {path} is described");
        let url = format!("{}{}", app.address, path.replace("{id}", "1"));
        let status = app.client.request(method.to_uppercase().parse().unwrap(), url).send().await.unwrap().status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    for name in ["RunSummary", "RunView", "ExceptionView", "PspSide", "TillSide", "ResolveExceptionRequest"] {
        assert!(doc["components"]["schemas"][name].is_object(), "schema {name}");
    }
}

/// One query on the sandbox PSP's own database (an independent party: read
/// directly, as it has no list API for these).
fn at_psp<T: rusqlite::types::FromSql>(app: &TestApp, sql: &str) -> Vec<T> {
    let psp = rusqlite::Connection::open(&app.settings.sandbox.database_path).unwrap();
    let mut st = psp.prepare(sql).unwrap();
    st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// till's calls to the PSP about one day's report, in order, as "METHOD path
/// status", once the call log has the download, the last of them (the log
/// is written in the background, in order).
async fn report_calls(app: &TestApp, day: NaiveDate) -> Vec<String> {
    let sql = format!(
        "SELECT method || ' ' || path || ' ' || COALESCE(CAST(http_status AS TEXT), 'none') FROM psp_calls
         WHERE subject_id = 'settlement_report:{day}' ORDER BY id"
    );
    let started = std::time::Instant::now();
    loop {
        let calls: Vec<String> = app.column(&sql);
        if calls.iter().any(|c| c.contains("/v1/files/")) {
            return calls;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "calls never logged: {calls:?}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

fn day_start(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp()
}

#[tokio::test]
async fn the_nightly_job_fetches_the_day_through_a_report_run_and_matches() {
    // Arrange: a hosted checkout and a token payment, paid today.
    let app = spawn_app().await;
    let day = today();
    paid_hosted(&app, &[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    paid_token(&app, &[("seller_c", "12.00", "USD")]).await;

    // Act: the nightly job's work for the day.
    let summary = reconciliation::reconcile_day(&app.ctx, day).await.unwrap();

    // Assert: every charge matched, its fee booked, nothing for a person.
    let run = &summary.run;
    assert!(!summary.already_imported);
    assert_eq!((run.counts["matched"], run.fees_booked, run.open_exceptions), (2, 2, 0), "{summary:?}");
    assert_eq!((run.status.as_str(), run.source.as_str()), ("done", "scheduled"));
    // The PSP ran the report the job asked for: Stripe's report type, the
    // UTC day, every column till reads.
    let start = day_start(day);
    let runs: Vec<String> = at_psp(
        &app,
        "SELECT report_type || ' ' || interval_start || ' ' || interval_end || ' ' || status || ' ' || columns
         FROM report_runs",
    );
    let columns = serde_json::to_string(&reconciliation::parse::REPORT_COLUMNS).unwrap();
    assert_eq!(
        runs,
        [format!("balance_change_from_activity.itemized.3 {start} {} succeeded {columns}", start + 86_400)]
    );
    // till created the run, read it until it had succeeded, downloaded its
    // file, and never used the sandbox's shortcut.
    let calls = report_calls(&app, day).await;
    let run_id: String = at_psp(&app, "SELECT id FROM report_runs").remove(0);
    let file_id: String = at_psp(&app, "SELECT result_file FROM report_runs").remove(0);
    assert_eq!(calls.first().unwrap(), "POST /v1/reporting/report_runs 200");
    assert_eq!(calls.last().unwrap(), &format!("GET /v1/files/{file_id}/contents 200"));
    let reads = &calls[1..calls.len() - 1];
    assert!(!reads.is_empty(), "the run was created pending, so it was read again: {calls:?}");
    assert!(reads.iter().all(|c| *c == format!("GET /v1/reporting/report_runs/{run_id} 200")), "{calls:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM psp_calls WHERE path LIKE '/v1/sandbox/%'"), 0);
    // What was imported is the PSP's file, which is the day's settlement report.
    let raw: Vec<u8> = app.value("SELECT raw FROM settlement_files");
    let contents: String = at_psp(&app, "SELECT contents FROM files").remove(0);
    assert_eq!(String::from_utf8(raw).unwrap(), contents);
    assert_eq!(contents, report(&app, day).await);

    // The next run of the job gets a new report run with the same file: nothing changes.
    let ledger_before = app.count("SELECT COUNT(*) FROM ledger_transactions");
    let again = reconciliation::reconcile_day(&app.ctx, day).await.unwrap();
    assert!(again.already_imported, "{again:?}");
    assert_eq!(again.run.id, run.id);
    assert_eq!(at_psp::<String>(&app, "SELECT id FROM report_runs").len(), 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM ledger_transactions"), ledger_before);
    app.assert_ledger_ok();
}

#[tokio::test]
async fn the_scheduled_job_runs_the_report_of_yesterday() {
    let app = spawn_app().await;
    let before = today().pred_opt().unwrap();
    let summary = reconciliation::reconcile_yesterday(&app.ctx).await.unwrap();
    let after = today().pred_opt().unwrap();

    let start: i64 = at_psp(&app, "SELECT interval_start FROM report_runs").remove(0);
    let yesterday = if start == day_start(before) { before } else { after };
    assert_eq!(start, day_start(yesterday), "the run covers yesterday (UTC)");
    assert_eq!(summary.run.file_name, format!("settlement report {yesterday}"));
    assert_eq!((summary.run.rows_total, summary.run.status.as_str()), (0, "done"), "nothing happened yesterday");
}

#[tokio::test]
async fn the_report_file_is_downloaded_from_psp_files_base() {
    // A port nothing listens on (bound, then freed): a download from there fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = spawn_app_with(|s| s.psp.files_base = format!("http://{closed}")).await;
    let day = today();
    paid_token(&app, &[("seller_a", "10.00", "USD")]).await;

    let failed = reconciliation::reconcile_day(&app.ctx, day).await.unwrap_err();

    assert!(format!("{failed:#}").contains("could not connect to the PSP"), "{failed:#}");
    let calls = report_calls(&app, day).await;
    assert!(calls.last().unwrap().starts_with("GET /v1/files/file_"), "{calls:?}");
    assert!(calls.last().unwrap().ends_with(" none"), "no answer from files_base: {calls:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM settlement_files"), 0, "nothing imported");
    assert_eq!(app.count("SELECT COUNT(*) FROM reconciliation_runs"), 0);
}
