//! Manual capture in the dashboard, as staff use it: a checkout created with
//! `"capture_method": "manual"` and paid on the hosted page stops at
//! AUTHORIZED; the overview counts it apart (not stuck), its page says when
//! it must be captured by and offers a capture (all, part of an order, or
//! an order released) and a void, through `payments::capture`, audited,
//! idempotent per form key and CSRF-checked; refusals are the flash.

use serde_json::Value;

use crate::admin::sign_in;
use crate::admin_disputes::assert_forged_refused;
use crate::helpers::*;

fn key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_else(|| panic!("{field} in {v}")).to_string()
}

/// The stat of the overview under `label`, from its value on.
fn stat<'a>(overview: &'a str, label: &str) -> &'a str {
    overview.split(&format!("{label}</div>")).nth(1).unwrap_or_else(|| panic!("no stat {label}"))
}

#[tokio::test]
async fn staff_capture_part_of_an_authorized_checkout_from_its_page() {
    // Every order older than 0 minutes is stuck if not final, but an authorized one waits for the shop.
    let app = spawn_app_with(|s| s.alerts.unfinished_after_minutes = 0).await;
    let checkout =
        authorized_hosted_checkout(&app, &[("seller_a", "25.00", "USD"), ("seller_b", "10.00", "USD")]).await;
    let id = text(&checkout, "checkout_id");
    let (a, b) = (text(&checkout["orders"][0], "payment_order_id"), text(&checkout["orders"][1], "payment_order_id"));
    let browser = sign_in(&app).await;

    // The overview: authorized, with the first deadline; nothing stuck.
    let overview = browser.page("/admin").await;
    let authorized = stat(&overview, "Authorized, not captured");
    let soonest = [0, 1].map(|i| text(&checkout["orders"][i], "capture_before")).into_iter().min().unwrap();
    assert!(authorized.starts_with("<div class=\"value\">2</div>") && authorized.contains("35.00 USD"), "{authorized}");
    assert!(authorized.contains(&format!("capture the first before {}", till::admin::format::time(&soonest))));
    assert!(stat(&overview, "Stuck orders").starts_with("<div class=\"value\">0</div>"));
    assert!(overview.contains("Nothing is stuck."), "AUTHORIZED orders are not stuck");

    // The payment's page, the payments list and the seller's page.
    let page = browser.page(&format!("/admin/payments/{id}")).await;
    for expected in [
        "st-authorized".to_string(),
        "authorized, capture before".into(),
        format!("action=\"/admin/checkouts/{id}/capture\""),
        format!("action=\"/admin/checkouts/{id}/void\""),
        format!("name=\"amount_{a}\""),
        format!("name=\"amount_{b}\""),
        "authorized 35.00 USD".into(),
    ] {
        assert!(page.contains(&expected), "the payment's page shows {expected}");
    }
    assert!(!page.contains("action=\"/admin/refunds\""), "nothing to refund before the capture");
    let list = browser.page("/admin/payments?status=AUTHORIZED").await;
    assert!(list.contains(&a[..8]) && list.contains("pill st-authorized"));
    let seller = browser.page("/admin/sellers").await;
    assert!(seller.contains("seller_b") && seller.contains("10.00 USD"), "authorized, not in the balance yet");

    // A forged form; more than was authorized: nothing is captured.
    let path = format!("/admin/checkouts/{id}/capture");
    let (field_a, field_b) = (format!("amount_{a}"), format!("amount_{b}"));
    assert_forged_refused(&app, &browser, &path, &[("key", &key()), (&field_a, "20.00")]).await;
    let (location, page) = browser.act(&path, &[("key", &key()), (&field_a, "30.00"), (&field_b, "")]).await;
    assert!(location.starts_with(&format!("/admin/payments/{id}?action=")), "{location}");
    assert!(page.contains("Nothing was captured: 30.00 for order") && page.contains("exceeds the 25.00 USD"), "{page}");
    assert_eq!(app.get_json(&format!("/v1/checkouts/{id}")).await["status"], "authorized");

    // 20.00 of seller_a's order and all of seller_b's, once however often it is sent.
    let k = key();
    let form = [("key", k.as_str()), (field_a.as_str(), "20.00"), (field_b.as_str(), "")];
    let (location, page) = browser.act(&path, &form).await;
    assert!(page.contains("flash ok") && page.contains("Checkout captured:"), "{page}");
    assert!(page.contains("20.00 of 25.00 USD") && page.contains("10.00 USD in full"), "{page}");
    assert_eq!(browser.act(&path, &form).await.0, location, "the same form shows the same outcome");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM admin_actions WHERE action = 'capture_checkout' AND status = 'done'"),
        1
    );
    let captured = app.get_json(&format!("/v1/checkouts/{id}")).await;
    assert_eq!(
        (captured["orders"][0]["status"].as_str(), captured["orders"][0]["amount_captured"].as_str()),
        (Some("SUCCESS"), Some("20.00"))
    );
    assert_eq!(captured["orders"][1]["amount_captured"], "10.00");
    assert_eq!(app.balance("seller_a").await, "20.00");

    // Captured: what was charged shows, and is what a refund may take.
    assert!(page.contains("captured 20.00 USD of 25.00 USD") && page.contains("up to 20.00"), "{page}");
    assert!(!page.contains(&format!("action=\"/admin/checkouts/{id}/capture\"")), "no second capture");
    assert!(page.contains("capture_checkout") && page.contains("decided: capture"), "the staff action, the decision");
    let void = format!("/admin/checkouts/{id}/void");
    let (_, page) = browser.act(&void, &[("key", &key())]).await;
    assert!(page.contains("This checkout was captured already; it cannot be voided."), "{page}");
    let overview = browser.page("/admin").await;
    assert!(stat(&overview, "Authorized, not captured").starts_with("<div class=\"value\">0</div>"));
}

#[tokio::test]
async fn staff_void_an_authorized_checkout_and_its_orders_end_failed_canceled() {
    let app = spawn_app().await;
    let checkout = authorized_hosted_checkout(&app, &[("seller_a", "12.00", "USD")]).await;
    let id = text(&checkout, "checkout_id");
    let automatic = app.paid_checkout(&[("seller_a", "5.00", "USD")]).await;
    let browser = sign_in(&app).await;

    let path = format!("/admin/checkouts/{id}/void");
    assert_forged_refused(&app, &browser, &path, &[("key", &key())]).await;
    let (location, page) = browser.act(&path, &[("key", &key())]).await;
    assert!(location.starts_with(&format!("/admin/payments/{id}?action=")), "{location}");
    assert!(page.contains("Checkout voided: the buyer&#39;s authorization is released"), "{page}");
    let voided = app.get_json(&format!("/v1/checkouts/{id}")).await;
    assert_eq!(
        (voided["orders"][0]["status"].as_str(), voided["orders"][0]["failure_code"].as_str()),
        (Some("FAILED"), Some("canceled"))
    );
    assert!(page.contains("st-failed") && page.contains("canceled") && page.contains("decided: void"));
    assert!(!page.contains(&format!("action=\"/admin/checkouts/{id}/capture\"")), "nothing left to capture");
    let (_, page) = browser.act(&format!("/admin/checkouts/{id}/capture"), &[("key", &key())]).await;
    assert!(page.contains("This checkout was voided already; it cannot be captured."), "{page}");
    assert_eq!(app.balance("seller_a").await, "5.00", "only the automatic payment is booked");

    // An automatic checkout has nothing to capture; an unknown one is not found.
    let other = text(&automatic, "checkout_id");
    let (_, page) = browser.act(&format!("/admin/checkouts/{other}/capture"), &[("key", &key())]).await;
    assert!(page.contains("is captured automatically"), "{page}");
    let unknown = browser.post("/admin/checkouts/1f0c7a0e-3a57-4b5b-9a4c-2b8e0f0f6d11/void", &[("key", &key())]).await;
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);
}
