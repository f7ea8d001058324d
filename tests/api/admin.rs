//! The staff dashboard through HTTP, as a browser uses it (a cookie jar, no
//! redirects followed): anonymous visitors sent to sign in, wrong passwords
//! and missing CSRF tokens refused, and each action done once through the
//! core functions and recorded with the staff member. (Sign-in under
//! attack, rate limited: `admin_login`.)

use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::json;

use till::db::params;

use crate::helpers::{OnDatabase, TestApp, spawn_app, spawn_app_with};

pub const EMAIL: &str = "staff@example.com";
pub const PASSWORD: &str = "correct horse battery staple";

/// A signed-in browser: its cookie jar holds the session.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    /// The session's CSRF token, read from a page's forms.
    pub csrf: String,
}

pub fn create_staff(app: &TestApp) {
    let new = till::admin::users::NewStaff::new(EMAIL, PASSWORD).unwrap();
    app.ctx.db.write_now(|tx| Ok(till::admin::users::create(tx, &new)?)).unwrap();
}

fn new_client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The value of the first hidden field `name` in a page.
pub fn field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    Some(html[start..].split('"').next()?.to_string())
}

async fn try_sign_in(client: &reqwest::Client, base: &str, email: &str, password: &str) -> reqwest::Response {
    let page = client.get(format!("{base}/admin/login")).send().await.unwrap().text().await.unwrap();
    let csrf = field(&page, "csrf").expect("the login form has a CSRF token");
    client
        .post(format!("{base}/admin/login"))
        .form(&[("email", email), ("password", password), ("csrf", &csrf), ("next", "/admin")])
        .send()
        .await
        .unwrap()
}

/// Creates the staff user and signs in.
pub async fn sign_in(app: &TestApp) -> Browser {
    create_staff(app);
    let client = new_client();
    let resp = try_sign_in(&client, &app.address, EMAIL, PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/admin");
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let overview = client.get(format!("{}/admin", app.address)).send().await.unwrap().text().await.unwrap();
    let csrf = field(&overview, "csrf").expect("the sign-out form carries the session's CSRF token");
    Browser { client, base: app.address.clone(), csrf }
}

impl Browser {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    pub async fn page(&self, path: &str) -> String {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.text().await.unwrap()
    }

    /// POSTs a form with the session's CSRF token; `fields` include the form's `key`.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        form.extend_from_slice(fields);
        self.client.post(format!("{}{path}", self.base)).form(&form).send().await.unwrap()
    }

    /// POSTs and follows the redirect to the page that shows the outcome.
    pub async fn act(&self, path: &str, fields: &[(&str, &str)]) -> (String, String) {
        let resp = self.post(path, fields).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "POST {path}");
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let page = self.page(&location).await;
        (location, page)
    }
}

fn key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn paid_order(app: &TestApp, seller: &str, amount: &str) -> (String, String) {
    let done = app.paid_checkout(&[(seller, amount, "USD")]).await;
    let order = done["orders"][0]["payment_order_id"].as_str().unwrap().to_string();
    (done["checkout_id"].as_str().unwrap().to_string(), order)
}

const PAGES: [&str; 14] = [
    "/admin",
    "/admin/",
    "/admin/payments",
    "/admin/payments?q=seller_a&status=SUCCESS",
    "/admin/payments/1f0c7a0e-3a57-4b5b-9a4c-2b8e0f0f6d11",
    "/admin/sellers",
    "/admin/sellers/seller_a",
    "/admin/ledger",
    "/admin/ledger/accounts/1",
    "/admin/refunds",
    "/admin/disputes",
    "/admin/disputes?seller=seller_a&after=dp_none",
    "/admin/payouts",
    "/admin/alerts",
];

#[tokio::test]
async fn anonymous_visitors_are_sent_to_sign_in_from_every_page() {
    let app = spawn_app().await;
    let anonymous = new_client();
    for path in PAGES.iter().chain(&["/admin/jobs", "/admin/no-such-page", "/admin/reconciliation"]) {
        let resp = anonymous.get(format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        let location = resp.headers()["location"].to_str().unwrap();
        assert!(location.starts_with("/admin/login?next=%2Fadmin"), "{path} → {location}");
    }
    for path in [
        "/admin/refunds",
        "/admin/payouts",
        "/admin/jobs/1/retry",
        "/admin/alerts/1/resolve",
        "/admin/logout",
        "/admin/disputes/dp_x/evidence",
        "/admin/disputes/dp_x/accept",
        "/admin/checkouts/x/capture",
        "/admin/checkouts/x/void",
    ] {
        let resp = anonymous.post(format!("{}{path}", app.address)).form(&[("key", "k")]).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "POST {path}");
    }
    let login = anonymous.get(format!("{}/admin/login", app.address)).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    assert!(login.text().await.unwrap().contains("name=\"password\""));
    // Signed in, every page shows, and the visitor returns where they were going.
    let browser = sign_in(&app).await;
    for path in PAGES.iter().chain(&["/admin/jobs", "/admin/reconciliation"]) {
        let status = browser.get(path).await.status();
        let expected = if path.contains("1f0c7a0e") || path.contains("accounts/1") || path.ends_with("seller_a") {
            StatusCode::NOT_FOUND // nothing exists yet: a clear 404 page
        } else {
            StatusCode::OK
        };
        assert_eq!(status, expected, "{path}");
    }
    assert_eq!(browser.get("/admin/no-such-page").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_wrong_password_or_an_unknown_email_is_refused() {
    let app = spawn_app().await;
    create_staff(&app);
    let client = new_client();
    for (email, password) in [(EMAIL, "wrong password, long enough"), ("nobody@example.com", PASSWORD), (EMAIL, "")] {
        let resp = try_sign_in(&client, &app.address, email, password).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{email}");
        assert!(resp.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("till_session")));
        assert!(resp.text().await.unwrap().contains("The email or the password is wrong."));
    }
    assert_eq!(client.get(format!("{}/admin", app.address)).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("SELECT COUNT(*) FROM staff_sessions"), 0);
    // The email is not case-sensitive.
    let resp = try_sign_in(&client, &app.address, "STAFF@example.com", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused() {
    let app = spawn_app().await;
    let (_, order) = paid_order(&app, "seller_a", "25.00").await;
    let browser = sign_in(&app).await;
    let k = key();
    let refund = [("key", k.as_str()), ("payment_order_id", order.as_str()), ("amount", "5.00")];
    for csrf in [None, Some(""), Some("not-the-token")] {
        let mut form: Vec<(&str, &str)> = refund.to_vec();
        if let Some(token) = csrf {
            form.push(("csrf", token));
        }
        let resp = browser.client.post(format!("{}/admin/refunds", app.address)).form(&form).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{csrf:?}");
        assert!(resp.text().await.unwrap().contains("This form has expired"));
    }
    // Another session's token is not this session's.
    let other = new_client();
    assert_eq!(try_sign_in(&other, &app.address, EMAIL, PASSWORD).await.status(), StatusCode::SEE_OTHER);
    let other_page = other.get(format!("{}/admin", app.address)).send().await.unwrap().text().await.unwrap();
    let other_csrf = field(&other_page, "csrf").unwrap();
    assert_ne!(other_csrf, browser.csrf);
    let mut form = refund.to_vec();
    form.push(("csrf", &other_csrf));
    let resp = browser.client.post(format!("{}/admin/refunds", app.address)).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds"), 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM admin_actions"), 0);
    // The login form has its own token.
    let resp = new_client()
        .post(format!("{}/admin/login", app.address))
        .form(&[("email", EMAIL), ("password", PASSWORD), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let app = spawn_app().await;
    let browser = sign_in(&app).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM staff_sessions"), 1);
    let resp = browser.post("/admin/logout", &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/admin/login");
    assert_eq!(app.count("SELECT COUNT(*) FROM staff_sessions"), 0);
    assert_eq!(browser.get("/admin").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_partial_refund_from_the_dashboard_is_made_once_and_recorded() {
    let app = spawn_app().await;
    let (checkout, order) = paid_order(&app, "seller_a", "25.00").await;
    let browser = sign_in(&app).await;
    let page = browser.page(&format!("/admin/payments/{checkout}")).await;
    assert!(page.contains("action=\"/admin/refunds\""), "a SUCCESS order has a refund form");
    let k = key();
    let form = [("key", k.as_str()), ("payment_order_id", order.as_str()), ("amount", "10.00"), ("reason", "dented")];
    let (location, page) = browser.act("/admin/refunds", &form).await;
    assert!(location.starts_with(&format!("/admin/payments/{checkout}?action=")), "{location}");
    assert!(page.contains("Refund of 10.00 USD created"), "the outcome is shown");
    assert_eq!(app.balance("seller_a").await, "15.00");
    let created_by: String = app.value("SELECT created_by FROM refunds");
    assert_eq!(created_by, EMAIL);

    // The same form again (a double click, a reload): nothing more happens.
    let (again, _) = browser.act("/admin/refunds", &form).await;
    assert_eq!(again, location);
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds"), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM admin_actions WHERE action = 'refund' AND status = 'done'"), 1);

    // More than is left: refused by the core function, with its reason.
    let k2 = key();
    let (_, page) =
        browser.act("/admin/refunds", &[("key", &k2), ("payment_order_id", &order), ("amount", "20.00")]).await;
    assert!(page.contains("Refund refused"), "{page}");
    assert!(page.contains("exceeds the 15.00 still refundable"));
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds"), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM admin_actions WHERE status = 'failed'"), 1);
    let refund_id: String = app.value("SELECT refund_id FROM refunds");
    assert_eq!(app.wait_refund(&refund_id).await["status"], "SUCCEEDED");
    let page = browser.page(&format!("/admin/payments/{checkout}")).await;
    assert!(page.contains("SUCCEEDED") && page.contains("dented") && page.contains(EMAIL));
    assert!(page.contains("refund ") && page.contains("liabilities:seller:seller_a"), "the refund's ledger entries");
    let refunds = browser.page("/admin/refunds").await;
    assert!(refunds.contains("10.00 USD") && refunds.contains(EMAIL));
}

#[tokio::test]
async fn a_payout_from_the_dashboard_is_made_once_and_recorded() {
    let app = spawn_app_with(|s| {
        s.queue.backoff_base_ms = 20;
        s.queue.backoff_cap_ms = 200;
    })
    .await;
    paid_order(&app, "seller_a", "25.00").await;
    let resp = app
        .client
        .put(format!("{}/v1/sellers/seller_a", app.address))
        .bearer_auth(&app.api_key)
        .json(&json!({"name": "Seller A", "payout_destination": "acct_seller_a"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let browser = sign_in(&app).await;
    let page = browser.page("/admin/sellers/seller_a").await;
    assert!(page.contains("25.00 USD") && page.contains("action=\"/admin/payouts\""), "{page}");
    let k = key();
    let form = [("key", k.as_str()), ("seller_id", "seller_a"), ("currency", "USD"), ("amount", "20.00")];
    let (location, page) = browser.act("/admin/payouts", &form).await;
    assert!(location.starts_with("/admin/sellers/seller_a?action="), "{location}");
    assert!(page.contains("Payout of 20.00 USD to acct_seller_a created"), "{page}");
    browser.act("/admin/payouts", &form).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM payouts"), 1, "the same form pays out once");
    let by: String = app.value("SELECT created_by FROM payouts");
    assert_eq!(by, EMAIL);
    assert_eq!(app.balance("seller_a").await, "5.00");
    let k2 = key();
    let (_, page) = browser
        .act("/admin/payouts", &[("key", &k2), ("seller_id", "seller_a"), ("currency", "USD"), ("amount", "6.00")])
        .await;
    assert!(page.contains("Payout refused") && page.contains("exceeds the 5.00 available"), "{page}");
    assert!(browser.page("/admin/payouts").await.contains("20.00 USD"));
}

/// A dead letter with its alert, as the queue leaves one.
fn dead_job(app: &TestApp, kind: &str, subject: &str) -> i64 {
    let now = till::db::now();
    app.ctx
        .db
        .write_now(|tx| {
            let id: i64 = tx.query_value(
                "INSERT INTO jobs (kind, subject_id, status, attempts, max_attempts, run_at_ms, last_error, created_at,
                                   updated_at)
                 VALUES ($1, $2, 'dead', 3, 3, 0, 'HTTP 500 from the shop', $3, $3) RETURNING id",
                params![kind, subject, now],
            )?;
            tx.execute(
                "INSERT INTO alerts (kind, subject_id, message, status, created_at)
                 VALUES ('dead_letter', $1, 'dead', 'open', $2)",
                params![format!("job:{id}"), now],
            )?;
            Ok(id)
        })
        .unwrap()
}

#[tokio::test]
async fn dead_letters_are_retried_or_discarded_with_a_note() {
    let app = spawn_app().await;
    let retried = dead_job(&app, "deliver_webhook", "999999");
    let discarded = dead_job(&app, "deliver_webhook", "999998");
    let browser = sign_in(&app).await;
    let page = browser.page("/admin/jobs").await;
    assert!(page.contains("HTTP 500 from the shop") && page.contains(&format!("/admin/jobs/{retried}/retry")));
    let overview = browser.page("/admin").await;
    assert!(overview.contains("HTTP 500 from the shop"), "dead letters show on the overview");

    let k = key();
    let (location, page) = browser.act(&format!("/admin/jobs/{retried}/retry"), &[("key", &k)]).await;
    assert!(location.starts_with("/admin/jobs?action="));
    assert!(page.contains(&format!("Job {retried} is queued again")), "{page}");
    let resolution: String = app
        .ctx
        .db
        .read_now(|tx| {
            tx.query_value(
                "SELECT resolution FROM alerts WHERE subject_id = $1 ORDER BY id LIMIT 1",
                params![format!("job:{retried}")],
            )
        })
        .unwrap();
    assert_eq!(resolution, format!("retried by {EMAIL}"));

    let k = key();
    let (_, page) = browser.act(&format!("/admin/jobs/{discarded}/discard"), &[("key", &k), ("note", " ")]).await;
    assert!(page.contains("Write a note"), "a discard needs a note");
    let k = key();
    let path = format!("/admin/jobs/{discarded}/discard");
    let (_, page) = browser.act(&path, &[("key", &k), ("note", "the shop closed its endpoint")]).await;
    assert!(page.contains(&format!("Job {discarded} is discarded")), "{page}");
    let (status, by): (String, String) = app
        .ctx
        .db
        .read_now(|tx| {
            tx.query_row("SELECT status, discarded_by FROM jobs WHERE id = $1", params![discarded], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .unwrap();
    assert_eq!((status.as_str(), by.as_str()), ("dead", EMAIL));
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM alerts WHERE subject_id = 'job:{discarded}' AND status = 'open'")),
        0
    );
    assert!(browser.page("/admin/jobs").await.contains("the shop"), "the discarded job is listed apart");
    let k = key();
    let (_, page) = browser.act(&path, &[("key", &k), ("note", "again")]).await;
    assert!(page.contains("not a dead letter that can be discarded"));
    assert_eq!(app.count("SELECT COUNT(*) FROM admin_actions WHERE staff_email = 'staff@example.com'"), 4);
}

#[tokio::test]
async fn an_alert_is_resolved_with_a_note() {
    let app = spawn_app().await;
    let id: i64 = app
        .ctx
        .db
        .write_now(|tx| {
            tx.query_value(
                "INSERT INTO alerts (kind, subject_id, message, status, created_at)
                 VALUES ('ledger_audit', 'ledger', 'the ledger audit found 1 violation', 'open', $1) RETURNING id",
                params![till::db::now()],
            )
        })
        .unwrap();
    let browser = sign_in(&app).await;
    assert!(browser.page("/admin/alerts").await.contains("the ledger audit found 1 violation"));
    let k = key();
    let (location, page) =
        browser.act(&format!("/admin/alerts/{id}/resolve"), &[("key", &k), ("note", "fixed by hand")]).await;
    assert!(location.starts_with("/admin/alerts?action="));
    assert!(page.contains(&format!("Alert {id} is resolved")));
    let (status, resolution): (String, String) = app
        .ctx
        .db
        .read_now(|tx| {
            tx.query_row("SELECT status, resolution FROM alerts WHERE id = $1", params![id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .unwrap();
    assert_eq!(status, "resolved");
    assert!(resolution.contains("fixed by hand") && resolution.contains(EMAIL), "{resolution}");
    let k = key();
    let (_, page) = browser.act(&format!("/admin/alerts/{id}/resolve"), &[("key", &k), ("note", "again")]).await;
    assert!(page.contains("already resolved"));
}

#[tokio::test]
async fn the_pages_show_payments_sellers_and_the_ledger() {
    let app = spawn_app().await;
    let (checkout, order) = paid_order(&app, "seller_a", "1234.50").await;
    let (_, other) = paid_order(&app, "seller_b", "10.00").await;
    let browser = sign_in(&app).await;
    let overview = browser.page("/admin").await;
    assert!(overview.contains("1,244.50 USD"), "today's volume");
    assert!(overview.contains("100.0 %"), "success rate");
    assert!(overview.contains("<svg") && overview.contains("<rect"), "the 14-day chart");

    let list = browser.page("/admin/payments").await;
    assert!(list.contains(&order[..8]) && list.contains(&other[..8]));
    for q in [order.as_str(), checkout.as_str(), "seller_a", "KIM@example.com", "buyer_42"] {
        let found = browser.page(&format!("/admin/payments?q={}", q.replace('@', "%40"))).await;
        assert!(found.contains(&order[..8]), "search {q}");
    }
    let by_seller = browser.page("/admin/payments?q=seller_b").await;
    assert!(!by_seller.contains(&order[..8]) && by_seller.contains(&other[..8]));
    let failed = browser.page("/admin/payments?status=FAILED").await;
    assert!(failed.contains("Nothing matches"));

    let detail = browser.page(&format!("/admin/payments/{checkout}")).await;
    for expected in
        ["EXECUTING", "SUCCESS", "POST /v1/checkout/sessions", "checkout.session.completed", "assets:psp_balance"]
    {
        assert!(detail.contains(expected), "the payment's page shows {expected}");
    }
    let to_checkout = browser.get(&format!("/admin/payments/{order}")).await;
    assert_eq!(to_checkout.status(), StatusCode::SEE_OTHER, "an order's id leads to its checkout");

    let sellers = browser.page("/admin/sellers").await;
    assert!(sellers.contains("seller_a") && sellers.contains("1,234.50 USD"));
    let ledger = browser.page("/admin/ledger").await;
    assert!(ledger.contains("balanced") && ledger.contains("liabilities:seller:seller_b"));
    assert!(!ledger.contains("OUT OF BALANCE"));
}

#[tokio::test]
async fn till_user_create_reads_the_password_from_stdin() {
    let app = spawn_app().await;
    let run = |email: &str, password: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_till"))
            .args(["user", "create", "--email", email, "--config", crate::helpers::empty_config()])
            .on_database(&app.settings.database)
            .env("TILL_LOG__LEVEL", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("Ops@Example.com", "a long enough secret");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ops@example.com"));
    let short = run("short@example.com", "tiny");
    assert_eq!(short.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12 characters"));
    assert_eq!(run("ops@example.com", "a long enough secret").status.code(), Some(1), "exists already");
    let client = new_client();
    let resp = try_sign_in(&client, &app.address, "ops@example.com", "a long enough secret").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let stored: String = app.value("SELECT password_hash FROM staff_users WHERE email = 'ops@example.com'");
    assert!(stored.starts_with("$argon2id$") && !stored.contains("secret"));
}
