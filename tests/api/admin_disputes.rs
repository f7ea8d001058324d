//! Disputes in the dashboard, as staff use them: the sandbox disputes the
//! dispute test card's charges; the disputes page lists them (open first,
//! soonest deadline first, urgent within 48 h, then the closed ones) with
//! their deadline and PSP id; staff answer once, with evidence (won) or by
//! accepting (the cardholder keeps the money), through `disputes::answer`,
//! audited, idempotent per form key and CSRF-checked; refusals are the
//! flash message. The payment's, the seller's and the overview pages show
//! the disputes, the withdrawal and reinstatement postings and a debt.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::admin::{Browser, EMAIL, sign_in};
use crate::helpers::*;

/// Disputes open 150 ms after the charge.
async fn spawn() -> TestApp {
    spawn_app_with(|s| s.sandbox.dispute_after_ms = 150).await
}

fn key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_else(|| panic!("{field} in {v}")).to_string()
}

/// A paid order of `seller` that the PSP disputes: (checkout, order, its dispute).
async fn disputed_order(app: &TestApp, seller: &str, amount: &str) -> (String, String, Value) {
    let paid = disputed_token_payment(app, &[(seller, amount, "USD")]).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    let order = text(&paid["orders"][0], "payment_order_id");
    let dispute = wait_for_disputes(app, &order, 1).await.remove(0);
    (text(&paid, "checkout_id"), order, dispute)
}

/// The part of a seller's page above its payouts: the wallet.
fn wallet_part(seller_page: &str) -> &str {
    seller_page.split("<h2>Payouts").next().unwrap()
}

/// A form POSTed without the session's CSRF token is refused, and records nothing.
pub async fn assert_forged_refused(app: &TestApp, browser: &Browser, path: &str, fields: &[(&str, &str)]) {
    let resp = browser.client.post(format!("{}{path}", app.address)).form(fields).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "POST {path} without a CSRF token");
    assert!(resp.text().await.unwrap().contains("This form has expired"));
    assert_eq!(app.count("SELECT COUNT(*) FROM admin_actions"), 0, "nothing recorded for {path}");
}

#[tokio::test]
async fn staff_send_evidence_from_the_disputes_page_and_the_won_dispute_gives_the_money_back() {
    let app = spawn().await;
    let (checkout, order, dispute) = disputed_order(&app, "seller_a", "25.00").await;
    let id = text(&dispute, "dispute_id");
    let browser = sign_in(&app).await;

    // Listed, with its deadline, its PSP id, its order and the two ways to answer it.
    let page = browser.page("/admin/disputes").await;
    let due = till::admin::format::time(dispute["evidence_due_by"].as_str().unwrap());
    for expected in [
        format!("evidence due {due} (in 6 days)"),
        text(&dispute, "psp_dispute_id"),
        format!("href=\"/admin/payments/{checkout}#order-{order}\""),
        format!("action=\"/admin/disputes/{id}/evidence\""),
        format!("action=\"/admin/disputes/{id}/accept\""),
        "needs response".into(),
        "fraudulent".into(),
        "fee 15.00 USD".into(),
        "the cardholder keeps the money".into(),
        "href=\"/admin/disputes\" class=\"active\"".into(),
    ] {
        assert!(page.contains(&expected), "the disputes page shows {expected}");
    }
    assert!(!page.contains("pill st-urgent"), "due in a week: not urgent");

    // The payment's page: the dispute, no refund while it is open, the withdrawal booked.
    let payment = browser.page(&format!("/admin/payments/{checkout}")).await;
    assert!(payment.contains(&format!("#dispute-{id}")) && payment.contains("st-needs-response"), "{payment}");
    assert!(!payment.contains("action=\"/admin/refunds\"") && payment.contains("No refund while dispute"));
    assert!(payment.contains("dispute withdrawal") && payment.contains("expenses:dispute_fees"), "the ledger");
    let seller = browser.page("/admin/sellers/seller_a").await;
    assert!(wallet_part(&seller).contains("0.00 USD") && !wallet_part(&seller).contains("25.00 USD"));
    assert!(seller.contains("needs response") && seller.contains(&order[..8]), "the seller's disputes");

    // A forged form, and an empty text: nothing is recorded with the PSP.
    let path = format!("/admin/disputes/{id}/evidence");
    assert_forged_refused(&app, &browser, &path, &[("key", &key()), ("text", "winning_evidence")]).await;
    assert_forged_refused(&app, &browser, &format!("/admin/disputes/{id}/accept"), &[("key", &key())]).await;
    let (location, page) = browser.act(&path, &[("key", &key()), ("text", "  \r\n ")]).await;
    assert!(location.starts_with("/admin/disputes?action="), "{location}");
    assert!(page.contains("flash error") && page.contains("Nothing was sent: the evidence must not be empty."));
    assert_eq!(app.get_json(&format!("/v1/disputes/{id}")).await["response"], Value::Null);
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'send_dispute_response'"), 0);
    assert!(page.contains(&format!("action=\"/admin/disputes/{id}/evidence\"")), "still to be answered");

    // The evidence: sent once, however often the form is submitted.
    let k = key();
    let form = [("key", k.as_str()), ("text", "winning_evidence")];
    let (location, page) = browser.act(&path, &form).await;
    assert!(page.contains("flash ok") && page.contains(&format!("Evidence sent to the PSP for dispute {id}")));
    assert_eq!(browser.act(&path, &form).await.0, location, "the same form shows the same outcome");
    let done = "SELECT COUNT(*) FROM admin_actions WHERE action = 'dispute_evidence' AND status = 'done'";
    assert_eq!(app.count(done), 1);
    let by: String =
        app.value("SELECT staff_email FROM admin_actions WHERE action = 'dispute_evidence' AND status = 'done'");
    assert_eq!(by, EMAIL);

    // Won: closed, the money back in the seller's wallet, refunds possible again.
    let won = wait_for_dispute_status(&app, &id, "won").await;
    assert_eq!(won["evidence_text"], "winning_evidence");
    let page = browser.page("/admin/disputes").await;
    assert!(page.contains("st-won") && page.contains("evidence: winning_evidence"), "{page}");
    assert!(!page.contains(&format!("/admin/disputes/{id}/evidence")), "answered: no form");
    assert!(page.contains("No open disputes."));
    assert_eq!(app.balance("seller_a").await, "25.00");
    let seller = browser.page("/admin/sellers/seller_a").await;
    assert!(wallet_part(&seller).contains("25.00 USD") && seller.contains("given back"), "{seller}");
    let payment = browser.page(&format!("/admin/payments/{checkout}")).await;
    assert!(payment.contains("reinstated (won) dispute") && payment.contains("dispute_reversal"), "the ledger");
    assert!(payment.contains("action=\"/admin/refunds\"") && payment.contains("up to 25.00"), "won: refundable");
    assert!(payment.contains("dispute_evidence"), "the staff action shows on the payment");
}

#[tokio::test]
async fn an_accepted_dispute_is_given_up_and_a_seller_paid_out_before_shows_its_debt() {
    let app = spawn().await;
    let seller = json!({"name": "Seller B", "payout_destination": "acct_seller_b"});
    let put = app.client.put(format!("{}/v1/sellers/seller_b", app.address)).bearer_auth(&app.api_key).json(&seller);
    assert!(put.send().await.unwrap().status().is_success());
    // Paid and paid out before the PSP disputes it (150 ms later): the seller owes it.
    let paid = disputed_token_payment(&app, &[("seller_b", "20.00", "USD")]).await;
    let payout = app.post_json("/v1/payouts", &json!({"seller_id": "seller_b", "currency": "USD"}), None).await;
    assert_eq!(payout.status(), StatusCode::CREATED);
    let owed = wait_for_disputes(&app, &text(&paid["orders"][0], "payment_order_id"), 1).await.remove(0);
    let owed_id = text(&owed, "dispute_id");
    // Another, due in 5 hours: urgent, and listed first.
    let (_, _, soon) = disputed_order(&app, "seller_c", "7.00").await;
    let soon_id = text(&soon, "dispute_id");
    // Each event re-reads the PSP's deadline: both of the opening's are applied before it is moved.
    let applied = format!(
        "SELECT COUNT(*) FROM psp_events WHERE object_id = '{}' AND processed_at IS NOT NULL",
        text(&soon, "psp_dispute_id")
    );
    let started = std::time::Instant::now();
    while app.count(&applied) < 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the dispute's events never applied");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let in_5h = (chrono::Utc::now() + chrono::Duration::hours(5)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    app.execute(&format!("UPDATE disputes SET evidence_due_by = '{in_5h}' WHERE dispute_id = '{soon_id}'")).unwrap();
    let browser = sign_in(&app).await;

    let sellers = browser.page("/admin/sellers").await;
    assert!(sellers.contains("owes 20.00 USD (disputes)"), "{sellers}");
    let page = browser.page("/admin/sellers/seller_b").await;
    assert!(page.contains("owes 20.00 USD (disputes)") && page.contains("no payout while it owes 20.00 USD"));
    assert!(!page.contains("action=\"/admin/payouts\""), "no payout form while in debt");
    let overview = browser.page("/admin").await;
    let stat = overview.split("Open disputes</div>").nth(1).unwrap();
    assert!(stat.starts_with("<div class=\"value\">2</div>") && stat.contains("next evidence due"), "{stat}");
    let list = browser.page("/admin/disputes").await;
    assert!(list.contains("2 need a response"));
    let (first, second) =
        (list.find(&format!("id=\"dispute-{soon_id}\"")), list.find(&format!("id=\"dispute-{owed_id}\"")));
    assert!(first.unwrap() < second.unwrap(), "the soonest deadline first");
    assert!(list.contains("pill st-urgent") && list.contains("(in 4 h)"), "due within 48 h: urgent");

    // Accepted: the cardholder keeps the money; no evidence after it.
    let path = format!("/admin/disputes/{owed_id}/accept");
    let (_, page) = browser.act(&path, &[("key", &key())]).await;
    assert!(page.contains(&format!("Dispute {owed_id} accepted: the cardholder keeps the 20.00 USD")), "{page}");
    wait_for_dispute_status(&app, &owed_id, "accepted").await;
    let evidence = format!("/admin/disputes/{owed_id}/evidence");
    let (_, page) = browser.act(&evidence, &[("key", &key()), ("text", "winning_evidence")]).await;
    assert!(page.contains("Nothing was sent: this dispute was answered already (accept)"), "{page}");
    assert!(page.contains("st-accepted") && page.contains(">accepted<"), "listed as closed");
    assert_eq!(app.get_json("/v1/wallets/seller_b").await["balances"][0]["debt"], "20.00", "accepted: still owed");

    // The cursor walks the open disputes, then the closed; an unknown one shows nothing.
    let next = browser.page(&format!("/admin/disputes?after={soon_id}")).await;
    assert!(next.contains("on the <a href=\"/admin/disputes\">first page</a>"), "{next}");
    assert!(next.contains(&format!("id=\"dispute-{owed_id}\"")), "the closed one follows");
    assert!(!next.contains(&format!("id=\"dispute-{soon_id}\"")));
    let end = browser.page(&format!("/admin/disputes?after={owed_id}")).await;
    assert!(!end.contains(&format!("id=\"dispute-{owed_id}\"")) && end.contains("No closed disputes yet."));
    let scoped = browser.page("/admin/disputes?seller=seller_c").await;
    assert!(scoped.contains(&soon_id) && !scoped.contains(&owed_id) && scoped.contains("of seller seller_c"));
    assert_eq!(browser.get("/admin/disputes?after=nope").await.status(), StatusCode::OK);
    let unknown = browser.post("/admin/disputes/dp_nope/accept", &[("key", &key())]).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_hosted_checkouts_dispute_is_shared_by_its_orders_and_answered_once_for_all() {
    let app = spawn().await;
    let created = app.create_hosted(&[("seller_a", "30.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    let paid = app.pay(created["redirect_url"].as_str().unwrap(), "4000000000000259").await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    let checkout = app.wait_until_done(created["checkout_id"].as_str().unwrap()).await;
    let (a, b) = (text(&checkout["orders"][0], "payment_order_id"), text(&checkout["orders"][1], "payment_order_id"));
    let (first, second) =
        (wait_for_disputes(&app, &a, 1).await.remove(0), wait_for_disputes(&app, &b, 1).await.remove(0));
    assert_eq!(first["psp_dispute_id"], second["psp_dispute_id"], "one PSP dispute, one row per order");
    let browser = sign_in(&app).await;

    let page = browser.page("/admin/disputes").await;
    assert!(page.contains("shared by the 2 orders its charge paid"), "{page}");
    assert!(page.contains("2 need a response"));
    let payment = browser.page(&format!("/admin/payments/{}", text(&checkout, "checkout_id"))).await;
    for id in [text(&first, "dispute_id"), text(&second, "dispute_id")] {
        assert!(payment.contains(&format!("#dispute-{id}")), "each order shows its part");
    }
    assert_eq!(payment.matches("No refund while dispute").count(), 2);

    // Accepting one part accepts the PSP's dispute: every part closes.
    let (_, page) =
        browser.act(&format!("/admin/disputes/{}/accept", text(&first, "dispute_id")), &[("key", &key())]).await;
    assert!(page.contains("accepted: the cardholder keeps the"), "{page}");
    wait_for_dispute_status(&app, &text(&second, "dispute_id"), "accepted").await;
    let page = browser.page("/admin/disputes").await;
    assert!(page.contains("No open disputes.") && page.matches("pill st-accepted").count() == 2, "{page}");
}
