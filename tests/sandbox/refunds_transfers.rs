//! Refunds, transfers and the settlement report they end up in.

use crate::helpers::{TestSandbox, spawn_sandbox};

async fn paid_intent(sb: &TestSandbox, amount: &str) -> String {
    let form = [
        ("amount", amount),
        ("currency", "usd"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("automatic_payment_methods[enabled]", "true"),
        ("automatic_payment_methods[allow_redirects]", "never"),
        ("metadata[checkout_id]", "chk_7"),
        ("metadata[payment_order_id]", "po_7"),
    ];
    sb.post_json("/v1/payment_intents", &form, 200).await["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn refunds_settle_asynchronously_and_never_exceed_the_intent() {
    let sb = spawn_sandbox().await;
    let pi = paid_intent(&sb, "2500").await;
    let refund =
        sb.post_json("/v1/refunds", &[("payment_intent", &pi), ("amount", "1000"), ("metadata[r]", "1")], 200).await;
    assert_eq!(refund["object"], "refund");
    assert_eq!(refund["status"], "pending");
    assert_eq!((refund["amount"].as_i64(), refund["currency"].as_str()), (Some(1000), Some("usd")));
    let id = refund["id"].as_str().unwrap();
    assert!(id.starts_with("re_"));

    let too_much = sb.post_json("/v1/refunds", &[("payment_intent", &pi), ("amount", "1501")], 400).await;
    assert_eq!(too_much["error"]["code"], "amount_too_large");
    let rest = sb.post_json("/v1/refunds", &[("payment_intent", &pi)], 200).await;
    assert_eq!(rest["amount"], 1500);
    let none_left = sb.post_json("/v1/refunds", &[("payment_intent", &pi)], 400).await;
    assert_eq!(none_left["error"]["code"], "charge_already_refunded");

    let updated = sb.receiver.wait_for("refund.updated", id).await;
    assert_eq!(updated.event["data"]["object"]["status"], "succeeded");
    assert_eq!(sb.get_json(&format!("/v1/refunds/{id}"), 200).await["status"], "succeeded");
}

#[tokio::test]
async fn concurrent_refunds_never_exceed_the_intent() {
    let sb = spawn_sandbox().await;
    let pi = paid_intent(&sb, "1000").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let request = sb
            .client
            .post(sb.url("/v1/refunds"))
            .bearer_auth(crate::helpers::SECRET_KEY)
            .form(&[("payment_intent", pi.as_str()), ("amount", "300")]);
        tasks.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    let mut ok = 0;
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            200 => ok += 1,
            400 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 3, "3 × 300 fit in 1000, a fourth does not");
}

#[tokio::test]
async fn a_refund_can_be_made_to_fail() {
    let sb = spawn_sandbox().await;
    let pi = paid_intent(&sb, "2500").await;
    let failing = sb
        .post_json(
            "/v1/refunds",
            &[("payment_intent", &pi), ("amount", "500"), ("metadata[sandbox_outcome]", "fail")],
            200,
        )
        .await;
    let by_amount = sb.post_json("/v1/refunds", &[("payment_intent", &pi), ("amount", "13")], 200).await;
    for refund in [&failing, &by_amount] {
        let id = refund["id"].as_str().unwrap();
        let updated = sb.receiver.wait_for("refund.updated", id).await;
        assert_eq!(updated.event["data"]["object"]["status"], "failed");
        assert!(updated.event["data"]["object"]["failure_reason"].is_string());
    }
    // A failed refund gives its amount back to the refundable rest.
    let rest = sb.post_json("/v1/refunds", &[("payment_intent", &pi)], 200).await;
    assert_eq!(rest["amount"], 2500);
}

#[tokio::test]
async fn refunds_need_a_succeeded_intent() {
    let sb = spawn_sandbox().await;
    let body = sb.post_json("/v1/refunds", &[("payment_intent", "pi_nope")], 400).await;
    assert_eq!(body["error"]["code"], "resource_missing");
    let open = sb.post_json("/v1/payment_intents", &[("amount", "100"), ("currency", "usd")], 200).await;
    let body = sb.post_json("/v1/refunds", &[("payment_intent", open["id"].as_str().unwrap())], 400).await;
    assert_eq!(body["error"]["code"], "charge_not_refundable");
}

#[tokio::test]
async fn transfers_pay_or_fail_by_destination() {
    let sb = spawn_sandbox().await;
    let form =
        |dest| vec![("amount", "700"), ("currency", "usd"), ("destination", dest), ("metadata[payout_id]", "p1")];
    let good = sb.post_json("/v1/transfers", &form("acct_seller_a"), 200).await;
    let bad = sb.post_json("/v1/transfers", &form("acct_fail_b"), 200).await;
    assert_eq!(good["object"], "transfer");
    assert_eq!((good["status"].as_str(), good["reversed"].as_bool()), (Some("pending"), Some(false)));
    let (good_id, bad_id) = (good["id"].as_str().unwrap(), bad["id"].as_str().unwrap());
    sb.receiver.wait_for("transfer.created", good_id).await;
    let paid = sb.receiver.wait_for("transfer.updated", good_id).await;
    assert_eq!(paid.event["data"]["object"]["status"], "paid");
    let reversed = sb.receiver.wait_for("transfer.reversed", bad_id).await;
    let t = &reversed.event["data"]["object"];
    assert_eq!(
        (t["status"].as_str(), t["reversed"].as_bool(), t["amount_reversed"].as_i64()),
        (Some("failed"), Some(true), Some(700))
    );
    assert_eq!(sb.get_json(&format!("/v1/transfers/{bad_id}"), 200).await["status"], "failed");
    let body = sb.post_json("/v1/transfers", &form("bank_1"), 400).await;
    assert_eq!(body["error"]["param"], "destination");
}

#[tokio::test]
async fn the_settlement_report_lists_todays_money_movements() {
    let sb = spawn_sandbox().await;
    let pi = paid_intent(&sb, "2500").await;
    let refund = sb.post_json("/v1/refunds", &[("payment_intent", &pi), ("amount", "500")], 200).await;
    sb.receiver.wait_for("refund.updated", refund["id"].as_str().unwrap()).await;
    let transfer =
        sb.post_json("/v1/transfers", &[("amount", "700"), ("currency", "usd"), ("destination", "acct_a")], 200).await;
    sb.receiver.wait_for("transfer.updated", transfer["id"].as_str().unwrap()).await;

    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let response = sb.get(&format!("/v1/sandbox/settlement_reports/{today}")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = response.text().await.unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for column in
        ["balance_transaction_id", "gross", "fee", "net", "reporting_category", "payment_metadata[payment_order_id]"]
    {
        assert!(header.contains(&column), "{column}");
    }
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let charge = rows.iter().find(|r| r[col("reporting_category")] == "charge").unwrap();
    // 2.9 % of 25.00 = 0.725 → 0.73 (half-up) + 0.30 fixed.
    assert_eq!((charge[col("gross")], charge[col("fee")], charge[col("net")]), ("25.00", "1.03", "23.97"));
    assert_eq!(charge[col("payment_intent_id")], pi);
    assert_eq!(charge[col("payment_metadata[checkout_id]")], "chk_7");
    assert_eq!(charge[col("payment_metadata[payment_order_id]")], "po_7");
    let refund_row = rows.iter().find(|r| r[col("reporting_category")] == "refund").unwrap();
    assert_eq!((refund_row[col("gross")], refund_row[col("net")]), ("-5.00", "-5.00"));
    assert_eq!(refund_row[col("source_id")], refund["id"].as_str().unwrap());
    let transfer_row = rows.iter().find(|r| r[col("reporting_category")] == "transfer").unwrap();
    assert_eq!(transfer_row[col("gross")], "-7.00");

    let bad = sb.get("/v1/sandbox/settlement_reports/2025-13-01").await;
    assert_eq!(bad.status(), 400);
}
