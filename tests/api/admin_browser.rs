//! The dashboard in a real browser: headless Chromium (Debian's `chromium`)
//! signs in, pays through the sandbox's hosted page, finds the payment,
//! refunds part of it from the payment's page, and sees the wallet and the
//! ledger change; then answers a dispute with evidence from the disputes
//! page and captures part of an authorization from its payment's page.
//! Screenshots of the main pages go to `target/screenshots/`.
//! Without Chromium the test fails under CI (env `CI`) and is skipped otherwise.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::{Page, ScreenshotParams};
use futures_util::StreamExt;
use serde_json::Value;

use crate::admin::{EMAIL, PASSWORD, create_staff};
use crate::helpers::{
    TestApp, authorized_hosted_checkout, disputed_token_payment, hosted_body, spawn_app_with, wait_for_dispute_status,
    wait_for_disputes,
};

const WIDTH: u32 = 1440;
const HEIGHT: u32 = 900;

pub fn chromium() -> Option<PathBuf> {
    let candidates =
        [std::env::var("CHROMIUM").ok(), Some("/usr/bin/chromium".into()), Some("/usr/bin/chromium-browser".into())];
    let found = candidates.into_iter().flatten().map(PathBuf::from).find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Chromium is missing: `apt-get install -y chromium` (CI installs it)"
        );
        eprintln!(
            "SKIPPED admin_browser: no Chromium at /usr/bin/chromium (apt-get install -y chromium, or set CHROMIUM)"
        );
    }
    found
}

pub fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp: the screenshots sit beside it.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Chrome {
    pub browser: Browser,
    pub handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

async fn launch(executable: &Path) -> Chrome {
    launch_at(executable, WIDTH, HEIGHT).await
}

/// Chromium with a window and viewport of this size (CSS pixels).
pub async fn launch_at(executable: &Path, width: u32, height: u32) -> Chrome {
    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable(executable)
        .no_sandbox()
        .user_data_dir(profile.path())
        .window_size(width, height)
        .viewport(Viewport { width, height, ..Viewport::default() })
        .args([
            "disable-gpu",
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "no-first-run",
        ])
        .launch_timeout(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (browser, mut events) = Browser::launch(config).await.expect("launching Chromium");
    let handler = tokio::spawn(async move { while events.next().await.is_some() {} });
    Chrome { browser, handler, _profile: profile }
}

/// The page's HTML; while a navigation is under way the old document can be
/// gone, so this asks again.
pub async fn html(page: &Page) -> String {
    let mut last = None;
    for _ in 0..50 {
        match page.content().await {
            Ok(content) => return content,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("reading the page: {last:?}")
}

/// Polls the page (reloading it when `reload`) until its HTML satisfies `pred`.
pub async fn wait_for(page: &Page, what: &str, reload: bool, pred: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let content = html(page).await;
        if pred(&content) {
            return content;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the page never showed {what}:\n{content}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if reload {
            page.reload().await.unwrap();
        }
    }
}

pub async fn goto(page: &Page, url: &str) -> String {
    page.goto(url).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    html(page).await
}

pub async fn fill(page: &Page, selector: &str, text: &str) {
    page.find_element(selector).await.unwrap().click().await.unwrap().type_str(text).await.unwrap();
}

pub async fn submit(page: &Page, button: &str) {
    page.find_element(button).await.unwrap().click().await.unwrap();
    page.wait_for_navigation().await.unwrap();
}

pub async fn shoot(page: &Page, name: &str) {
    let params = ScreenshotParams::builder().full_page(true).build();
    page.save_screenshot(params, screenshot_dir().join(format!("{name}.png"))).await.unwrap();
}

/// The shop creates a hosted checkout whose "thank you" page is the
/// dashboard's search for it, so the browser lands where staff look.
pub async fn create_checkout(app: &TestApp) -> (String, String) {
    let mut body = hosted_body(&[("seller_a", "25.00", "USD")]);
    let checkout_id = body["checkout_id"].as_str().unwrap().to_string();
    body["success_url"] = Value::String(format!("{}/admin/payments?q={checkout_id}", app.address));
    body["cancel_url"] = Value::String(format!("{}/admin", app.address));
    let resp = app.post_payment(&body).await;
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    (checkout_id, created["redirect_url"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn staff_pay_find_and_refund_a_payment_in_a_real_browser() {
    let Some(executable) = chromium() else { return };
    // The dispute test card's charges are disputed 150 ms after they are paid.
    let app = spawn_app_with(|s| s.sandbox.dispute_after_ms = 150).await;
    create_staff(&app);
    let (checkout_id, redirect_url) = create_checkout(&app).await;
    let chrome = launch(&executable).await;
    let page = chrome.browser.new_page("about:blank").await.unwrap();
    let base = app.address.clone();

    // Anonymous: sent to sign in; then signed in and back on the overview.
    let login = goto(&page, &format!("{base}/admin/payments")).await;
    assert!(login.contains("Staff sign-in"), "{login}");
    shoot(&page, "01-login").await;
    fill(&page, "#email", EMAIL).await;
    fill(&page, "#password", PASSWORD).await;
    submit(&page, "button[type=submit]").await;
    wait_for(&page, "the page asked for, signed in", false, |h| h.contains("Payments</h1>")).await;

    // The buyer pays on the sandbox's hosted page and returns to the shop's page.
    let hosted = goto(&page, &redirect_url).await;
    assert!(hosted.contains("card_number"));
    fill(&page, "#card_number", "4242424242424242").await;
    fill(&page, "#exp_month", "12").await;
    fill(&page, "#exp_year", "2034").await;
    fill(&page, "#cvc", "123").await;
    submit(&page, "button[type=submit]").await;
    let found = wait_for(&page, "the payment as SUCCESS", true, |h| h.contains("st-success")).await;
    assert!(found.contains(&checkout_id[..8]), "the search finds the payment");
    assert!(page.url().await.unwrap().unwrap().contains(&checkout_id));

    let seller = goto(&page, &format!("{base}/admin/sellers/seller_a")).await;
    assert!(seller.contains("25.00 USD"), "the wallet holds the payment");

    // From the list to the payment's page, and a partial refund.
    goto(&page, &format!("{base}/admin/payments?q={checkout_id}")).await;
    page.find_element(&format!("a[href=\"/admin/payments/{checkout_id}\"]")).await.unwrap().click().await.unwrap();
    let detail = wait_for(&page, "the payment's page", false, |h| h.contains("State history")).await;
    assert!(detail.contains("POST /v1/checkout/sessions") && detail.contains("checkout.session.completed"));
    fill(&page, "input[name=amount]", "10.00").await;
    fill(&page, "input[name=reason]", "one item arrived broken").await;
    submit(&page, ".refund-box button[type=submit]").await;
    let after = wait_for(&page, "the refund's outcome", false, |h| h.contains("class=\"flash")).await;
    assert!(after.contains("Refund of 10.00 USD created"), "{after}");
    wait_for(&page, "the refund SUCCEEDED", true, |h| h.contains("st-succeeded")).await;
    shoot(&page, "04-payment").await;

    // The wallet and the ledger moved.
    let seller = goto(&page, &format!("{base}/admin/sellers/seller_a")).await;
    assert!(seller.contains("15.00 USD") && !seller.contains("25.00 USD"), "the wallet lost the refund");
    shoot(&page, "06-seller").await;
    let ledger = goto(&page, &format!("{base}/admin/ledger")).await;
    assert!(ledger.contains("one item arrived broken") || ledger.contains("refund "), "the refund is booked");
    assert!(ledger.contains("15.00 USD") && ledger.contains("balanced"));
    shoot(&page, "07-ledger").await;

    // A settlement file, so that the reconciliation page has a run to show.
    let day = chrono::Utc::now().date_naive();
    let report = app
        .client
        .get(format!("{}/v1/sandbox/settlement_reports/{day}", app.sandbox))
        .bearer_auth(&app.settings.psp.secret_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let imported = app
        .client
        .post(format!("{}/v1/reconciliation/files?name=report-{day}.csv", app.address))
        .bearer_auth(&app.api_key)
        .header("Content-Type", "text/csv")
        .body(report)
        .send()
        .await
        .unwrap();
    assert!(imported.status().is_success());
    for (name, path) in [
        ("02-overview", "/admin"),
        ("03-payments", "/admin/payments"),
        ("05-sellers", "/admin/sellers"),
        ("08-refunds", "/admin/refunds"),
        ("09-payouts", "/admin/payouts"),
        ("10-alerts", "/admin/alerts"),
        ("11-jobs", "/admin/jobs"),
        ("12-reconciliation", "/admin/reconciliation"),
    ] {
        goto(&page, &format!("{base}{path}")).await;
        shoot(&page, name).await;
    }
    answer_a_dispute_and_capture(&app, &page).await;
    let mut browser = chrome.browser;
    browser.close().await.unwrap();
    browser.wait().await.unwrap();
    chrome.handler.abort();
}

/// A dispute answered with evidence from the disputes page (and won), and
/// part of a manual checkout's authorization captured from its page.
async fn answer_a_dispute_and_capture(app: &TestApp, page: &Page) {
    let base = &app.address;
    let disputed = disputed_token_payment(app, &[("seller_b", "40.00", "USD")]).await;
    let order = disputed["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    let dispute = wait_for_disputes(app, &order, 1).await.remove(0);
    let dispute_id = dispute["dispute_id"].as_str().unwrap().to_string();
    let listed = goto(page, &format!("{base}/admin/disputes")).await;
    assert!(listed.contains(&dispute_id) && listed.contains("evidence due"), "{listed}");
    shoot(page, "13-disputes").await;
    fill(page, &format!("#evidence-{dispute_id}"), "winning_evidence").await;
    submit(page, ".answer-box button[type=submit]").await;
    let sent = wait_for(page, "the evidence's outcome", false, |h| h.contains("class=\"flash")).await;
    assert!(sent.contains("Evidence sent to the PSP"), "{sent}");
    wait_for_dispute_status(app, &dispute_id, "won").await;
    wait_for(page, "the dispute won", true, |h| h.contains("st-won")).await;
    shoot(page, "14-disputes-won").await;

    let authorized = authorized_hosted_checkout(app, &[("seller_c", "30.00", "USD")]).await;
    let checkout = authorized["checkout_id"].as_str().unwrap().to_string();
    let order = authorized["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    let detail = goto(page, &format!("{base}/admin/payments/{checkout}")).await;
    assert!(detail.contains("authorized, capture before"), "{detail}");
    shoot(page, "15-authorized").await;
    fill(page, &format!("input[name=\"amount_{order}\"]"), "12.50").await;
    submit(page, "#capture button[type=submit]").await;
    let captured = wait_for(page, "the capture's outcome", false, |h| h.contains("class=\"flash")).await;
    assert!(captured.contains("Checkout captured") && captured.contains("12.50 of 30.00 USD"), "{captured}");
    assert!(captured.contains("captured 12.50 USD of 30.00 USD"));
    shoot(page, "16-captured").await;
}
