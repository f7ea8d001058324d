//! The dashboard on a phone: headless Chromium at 390 × 844 CSS pixels
//! (an iPhone 12 to 15) signs in and opens every page; on each, nothing is
//! wider than the screen (tables scroll inside their cards), the
//! navigation stays inside the header, above the title, and "Sign out" is
//! whole. At 1,280 px the payment's refunds fit in their card and name the
//! API key that asked. Screenshots go to `target/screenshots/phone-*.png`.
//! Skipped without Chromium, like `admin_browser`.

use serde_json::Value;

use crate::admin::{EMAIL, PASSWORD, create_staff};
use crate::admin_browser::{Chrome, chromium, fill, goto, launch_at, shoot, submit, wait_for};
use crate::helpers::{authorized_hosted_checkout, disputed_token_payment, spawn_app_with, wait_for_disputes};

/// What is wrong with the page's layout at this width, in words; empty if nothing.
const LAYOUT_PROBLEMS: &str = r#"(() => {
  const w = window.innerWidth, out = [];
  const page = document.documentElement.scrollWidth;
  if (page > w) out.push(`the page is ${page} px wide on a ${w} px screen`);
  const header = document.querySelector('header.top');
  if (header) {
    const h = header.getBoundingClientRect();
    const nav = header.querySelector('nav').getBoundingClientRect();
    if (nav.bottom > h.bottom + 0.5) out.push('the navigation runs out of the header');
    const title = document.querySelector('main h1');
    if (title && title.getBoundingClientRect().top < h.bottom) out.push('the title is under the header');
    const out_btn = [...header.querySelectorAll('button')].find(b => b.textContent.includes('Sign out'));
    if (!out_btn) out.push('no Sign out button');
    else {
      const r = out_btn.getBoundingClientRect();
      if (r.left < 0 || r.right > w) out.push(`Sign out is clipped (${Math.round(r.left)} to ${Math.round(r.right)})`);
    }
  }
  const scrolls = el => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll') return true;
    }
    return false;
  };
  for (const el of document.querySelectorAll('main *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > w + 1 && !scrolls(el)) {
      out.push(`<${el.tagName.toLowerCase()} class="${el.className}"> reaches ${Math.round(r.right)} px`);
      break;
    }
  }
  return out;
})()"#;

/// Tables that run out of the card (or order box) they are in, other than
/// those made to scroll sideways in a `.table-wrap`.
const TABLES_OUT_OF_CARDS: &str = r#"(() => [...document.querySelectorAll('main table')].filter(t => {
  const card = t.closest('.order, .card');
  return card && !t.closest('.table-wrap') && t.getBoundingClientRect().right > card.getBoundingClientRect().right + 1;
}).map(t => t.querySelector('th').parentElement.textContent.trim()))()"#;

async fn evaluate(page: &chromiumoxide::Page, script: &str) -> Value {
    page.evaluate(script).await.unwrap().into_value().unwrap()
}

/// The page laid out 390 px wide. A full-page screenshot clears the
/// device metrics it sets, which leaves headless Chromium at its smallest
/// window (500 px wide, not the 390 asked for): each page sets them again.
async fn at_phone_width(page: &chromiumoxide::Page) {
    use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
    page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 1., false)).await.unwrap();
    assert_eq!(evaluate(page, "window.innerWidth").await, serde_json::json!(390), "the page is 390 px wide");
}

async fn close(chrome: Chrome) {
    let mut browser = chrome.browser;
    browser.close().await.unwrap();
    browser.wait().await.unwrap();
    chrome.handler.abort();
}

#[tokio::test]
async fn every_dashboard_page_fits_a_phone_and_refunds_name_their_api_key() {
    let Some(executable) = chromium() else { return };
    let app = spawn_app_with(|s| s.sandbox.dispute_after_ms = 150).await;
    create_staff(&app);
    // An open dispute (its evidence form) and an authorization to capture (its capture form).
    let disputed = disputed_token_payment(&app, &[("seller_b", "40.00", "USD")]).await;
    let disputed_order = disputed["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    wait_for_disputes(&app, &disputed_order, 1).await;
    let disputed_id = disputed["checkout_id"].as_str().unwrap().to_string();
    let authorized =
        authorized_hosted_checkout(&app, &[("seller_c", "30.00", "USD"), ("seller_a", "5.00", "USD")]).await;
    let authorized_id = authorized["checkout_id"].as_str().unwrap().to_string();
    // A paid order with a refund asked for through the API (key "tests").
    let checkout = app.paid_checkout(&[("seller_a", "25.00", "USD")]).await;
    let order_id = checkout["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    let checkout_id = checkout["checkout_id"].as_str().unwrap().to_string();
    let refund: Value = app
        .refund(&order_id, serde_json::json!({"amount": "5.00", "reason": "a long reason that wraps in its cell"}))
        .await
        .json()
        .await
        .unwrap();
    app.wait_refund(refund["refund_id"].as_str().unwrap()).await;
    let base = app.address.clone();

    let chrome = launch_at(&executable, 390, 844).await;
    let page = chrome.browser.new_page("about:blank").await.unwrap();
    goto(&page, &format!("{base}/admin")).await;
    let login = evaluate(&page, LAYOUT_PROBLEMS).await;
    assert_eq!(login, serde_json::json!([]), "the sign-in page at 390 px");
    fill(&page, "#email", EMAIL).await;
    fill(&page, "#password", PASSWORD).await;
    submit(&page, "button[type=submit]").await;
    wait_for(&page, "the overview, signed in", false, |h| h.contains("Overview")).await;
    for (name, path) in [
        ("overview", "/admin".to_string()),
        ("payments", "/admin/payments".into()),
        ("payment", format!("/admin/payments/{checkout_id}")),
        ("sellers", "/admin/sellers".into()),
        ("seller", "/admin/sellers/seller_a".into()),
        ("refunds", "/admin/refunds".into()),
        ("disputes", "/admin/disputes".into()),
        ("payment-disputed", format!("/admin/payments/{disputed_id}")),
        ("payment-authorized", format!("/admin/payments/{authorized_id}")),
        ("seller-disputed", "/admin/sellers/seller_b".into()),
        ("payouts", "/admin/payouts".into()),
        ("ledger", "/admin/ledger".into()),
        ("alerts", "/admin/alerts".into()),
        ("jobs", "/admin/jobs".into()),
        ("reconciliation", "/admin/reconciliation".into()),
    ] {
        let html = goto(&page, &format!("{base}{path}")).await;
        assert!(!html.contains("Staff sign-in"), "{path} is shown signed in");
        at_phone_width(&page).await;
        let problems = evaluate(&page, LAYOUT_PROBLEMS).await;
        assert_eq!(problems, serde_json::json!([]), "{path} at 390 px");
        shoot(&page, &format!("phone-{name}")).await;
    }
    close(chrome).await;

    let chrome = launch_at(&executable, 1280, 900).await;
    let page = chrome.browser.new_page("about:blank").await.unwrap();
    goto(&page, &format!("{base}/admin")).await;
    fill(&page, "#email", EMAIL).await;
    fill(&page, "#password", PASSWORD).await;
    submit(&page, "button[type=submit]").await;
    wait_for(&page, "the overview, signed in", false, |h| h.contains("Overview")).await;
    let detail = goto(&page, &format!("{base}/admin/payments/{checkout_id}")).await;
    assert!(detail.contains("API key tests"), "the refund names the key that asked for it");
    shoot(&page, "desktop-payment").await;
    assert_eq!(evaluate(&page, TABLES_OUT_OF_CARDS).await, serde_json::json!([]), "tables stay in their cards");
    assert_eq!(evaluate(&page, LAYOUT_PROBLEMS).await, serde_json::json!([]), "the payment page at 1,280 px");
    close(chrome).await;
}
