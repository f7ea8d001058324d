//! Signing in to the dashboard under attack: many wrong passwords at once,
//! many accounts from one address, one account from many addresses behind
//! a proxy, several till processes on one database, and a `next` that tries
//! to write a response header.

use futures_util::future::join_all;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};

use crate::admin::{EMAIL, PASSWORD, create_staff, field};
use crate::helpers::{TestApp, spawn_app_with};

const WRONG: &str = "wrong password, long enough";
/// The proxy in front of till in these tests: every request comes from it.
const PROXY: &str = "127.0.0.1";
const HOME: &str = "203.0.113.7";
const OFFICE: &str = "198.51.100.9";

/// The login form as a browser got it: its CSRF token, which the browser
/// also holds as the `till_login` cookie (double submit). Each submission
/// sends that cookie itself, so that concurrent ones do not depend on the
/// order in which their answers replace it.
struct LoginForm {
    client: reqwest::Client,
    base: String,
    csrf: String,
}

impl LoginForm {
    async fn open(app: &TestApp) -> LoginForm {
        let page = app.client.get(format!("{}/admin/login", app.address)).send().await.unwrap();
        let csrf = field(&page.text().await.unwrap(), "csrf").expect("the login form has a CSRF token");
        LoginForm { client: app.client.clone(), base: app.address.clone(), csrf }
    }

    /// `forwarded_for`: the X-Forwarded-For a proxy in front of till would send.
    async fn submit(&self, email: &str, password: &str, next: &str, forwarded_for: Option<&str>) -> reqwest::Response {
        let form = [("email", email), ("password", password), ("csrf", &self.csrf), ("next", next)];
        let mut req = self
            .client
            .post(format!("{}/admin/login", self.base))
            .header(COOKIE, format!("till_login={}", self.csrf))
            .form(&form);
        if let Some(xff) = forwarded_for {
            req = req.header("X-Forwarded-For", xff);
        }
        req.send().await.unwrap()
    }

    async fn try_as(&self, email: &str, password: &str, forwarded_for: Option<&str>) -> StatusCode {
        self.submit(email, password, "/admin", forwarded_for).await.status()
    }
}

fn behind_a_proxy(attempts: u32) -> impl FnOnce(&mut till::config::Settings) {
    move |s| {
        s.admin.login_attempts = attempts;
        s.server.trusted_proxies = vec![PROXY.into()];
    }
}

/// A field of this process's /proc/self/status, in its own unit (kB for memory).
fn proc_status(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The attack of issue 13 (2): a hundred wrong passwords for one account
/// from one address, all at once. Only the allowed number may reach argon2
/// (19 MiB each); the rest are refused before it.
///
/// Resident memory belongs to the whole process, and the other tests of
/// this binary run in it at the same time; so the scenario runs in a
/// process of its own (the ignored test below), and this checks its end.
#[test]
fn a_hundred_concurrent_wrong_sign_ins_verify_at_most_the_limit() {
    let name = "admin_login::hundred_concurrent_wrong_sign_ins_in_this_process";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    assert!(report.contains("1 passed"), "the scenario ran: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a process of its own by a_hundred_concurrent_wrong_sign_ins_verify_at_most_the_limit"]
async fn hundred_concurrent_wrong_sign_ins_in_this_process() {
    let app = spawn_app_with(|_| {}).await;
    create_staff(&app);
    let form = LoginForm::open(&app).await;
    let allowed = app.settings.admin.login_attempts as usize;
    let (rss_before_kb, threads_before) = (proc_status("VmRSS"), proc_status("Threads"));

    let statuses = join_all((0..100).map(|_| form.try_as(EMAIL, WRONG, None))).await;

    let (rss_after_kb, threads_after) = (proc_status("VmRSS"), proc_status("Threads"));
    let verified = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    let grown_mib = rss_after_kb.saturating_sub(rss_before_kb) / 1024;
    println!(
        "verified {verified}, limited {limited}; VmRSS {} → {} MiB; threads {threads_before} → {threads_after}",
        rss_before_kb / 1024,
        rss_after_kb / 1024
    );
    assert!(verified <= allowed, "{verified} passwords were verified, {allowed} allowed: {statuses:?}");
    assert_eq!(verified + limited, 100, "every other attempt is refused as too many: {statuses:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM login_attempts WHERE state = 'failed'") as usize, 2 * verified);
    // One 19 MiB argon2 workspace per verification running at once (at most
    // one per core) and a hundred connections: 100 MiB on up to three cores.
    // Unbounded, it grew by about 1,700 MiB.
    let at_once = std::thread::available_parallelism().map_or(1, usize::from).min(allowed) as u64;
    let budget_mib = 100.max(40 + 20 * at_once);
    assert!(grown_mib < budget_mib, "resident memory grew by {grown_mib} MiB, more than {budget_mib}");
    assert!(threads_after < threads_before + 32, "threads {threads_before} → {threads_after}");
    // The right password too waits for the window to end.
    assert_eq!(form.try_as(EMAIL, PASSWORD, None).await, StatusCode::TOO_MANY_REQUESTS);
}

/// Issue 13 (14): failures from one address locked the account out for
/// every address.
#[tokio::test]
async fn failures_from_one_address_do_not_lock_the_account_out_elsewhere() {
    let app = spawn_app_with(behind_a_proxy(3)).await;
    create_staff(&app);
    let form = LoginForm::open(&app).await;
    for _ in 0..3 {
        assert_eq!(form.try_as(EMAIL, WRONG, Some(HOME)).await, StatusCode::UNAUTHORIZED);
    }
    let limited = form.submit(EMAIL, PASSWORD, "/admin", Some(HOME)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password, from there");
    let retry_after: u64 = limited.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert!(limited.text().await.unwrap().contains("Too many failed sign-ins"));
    assert_eq!(form.try_as("other@example.com", WRONG, Some(HOME)).await, StatusCode::UNAUTHORIZED, "other accounts");
    assert_eq!(form.try_as(EMAIL, PASSWORD, Some(OFFICE)).await, StatusCode::SEE_OTHER, "from elsewhere");
    assert_eq!(app.count("SELECT COUNT(*) FROM staff_sessions"), 1);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy_and_only_its_own_entry() {
    // No trusted proxy: a client's X-Forwarded-For is its own invention.
    let app = spawn_app_with(|s| s.admin.login_attempts = 3).await;
    create_staff(&app);
    let form = LoginForm::open(&app).await;
    for i in 0..3 {
        let made_up = format!("192.0.2.{i}");
        assert_eq!(form.try_as(EMAIL, WRONG, Some(&made_up)).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(form.try_as(EMAIL, PASSWORD, Some("192.0.2.99")).await, StatusCode::TOO_MANY_REQUESTS);

    // Behind a trusted proxy, what the client wrote left of the proxy's entry proves nothing.
    let app = spawn_app_with(behind_a_proxy(3)).await;
    create_staff(&app);
    let form = LoginForm::open(&app).await;
    for i in 0..3 {
        let spoofed = format!("192.0.2.{i}, {HOME}");
        assert_eq!(form.try_as(EMAIL, WRONG, Some(&spoofed)).await, StatusCode::UNAUTHORIZED);
    }
    let spoofed = format!("192.0.2.99, {HOME}");
    assert_eq!(form.try_as(EMAIL, PASSWORD, Some(&spoofed)).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn one_address_trying_many_accounts_is_limited() {
    // Two per account, and five times that per address across accounts.
    let app = spawn_app_with(behind_a_proxy(2)).await;
    create_staff(&app);
    let form = LoginForm::open(&app).await;
    for i in 0..10 {
        let email = format!("guess{i}@example.com");
        assert_eq!(form.try_as(&email, WRONG, Some(HOME)).await, StatusCode::UNAUTHORIZED, "{email}");
    }
    assert_eq!(form.try_as(EMAIL, PASSWORD, Some(HOME)).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(form.try_as(EMAIL, PASSWORD, Some(OFFICE)).await, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_successful_sign_in_clears_the_accounts_failures_from_that_address() {
    let app = spawn_app_with(behind_a_proxy(3)).await;
    create_staff(&app);
    let form = LoginForm::open(&app).await;
    for _ in 0..2 {
        assert_eq!(form.try_as(EMAIL, WRONG, Some(HOME)).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(form.try_as(EMAIL, PASSWORD, Some(HOME)).await, StatusCode::SEE_OTHER);
    // Three more, which the two before would otherwise have cut to one.
    for _ in 0..3 {
        assert_eq!(form.try_as(EMAIL, WRONG, Some(HOME)).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(form.try_as(EMAIL, WRONG, Some(HOME)).await, StatusCode::TOO_MANY_REQUESTS);
}

/// Several till processes on one database enforce one limit: it is kept in
/// the database, not in a process's memory.
#[tokio::test]
async fn every_till_process_on_the_database_enforces_the_same_limit() {
    let first = spawn_app_with(|s| s.admin.login_attempts = 3).await;
    let database = first.settings.database.clone();
    let second = spawn_app_with(move |s| {
        s.admin.login_attempts = 3;
        s.database.path = database.path;
        s.database.url = database.url;
    })
    .await;
    create_staff(&first);
    let (at_first, at_second) = (LoginForm::open(&first).await, LoginForm::open(&second).await);
    for _ in 0..3 {
        assert_eq!(at_first.try_as(EMAIL, WRONG, None).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(at_second.try_as(EMAIL, PASSWORD, None).await, StatusCode::TOO_MANY_REQUESTS);
}

/// Issue 13 (6): a CR LF in `next` made the redirect's Location header
/// invalid (a 500) after the session had been created.
#[tokio::test]
async fn a_next_that_would_write_a_header_returns_to_the_dashboard() {
    let app = spawn_app_with(|_| {}).await;
    create_staff(&app);
    let form = LoginForm::open(&app).await;
    for (i, next) in ["/admin\r\nX-Injected: 1", "/admin%0d%0aX-Injected:%201", "/admin/\u{7f}"].iter().enumerate() {
        let resp = form.submit(EMAIL, PASSWORD, next, None).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(resp.headers()[LOCATION], "/admin", "{next:?}");
        assert!(resp.headers().get("x-injected").is_none());
        assert!(resp.headers().get_all(SET_COOKIE).iter().any(|c| c.to_str().unwrap().starts_with("till_session=")));
        assert_eq!(app.count("SELECT COUNT(*) FROM staff_sessions"), i as i64 + 1);
    }
    // The login page puts it in its form as /admin, too.
    let query = "next=/admin%0d%0aX-Injected:%201";
    let page = app.client.get(format!("{}/admin/login?{query}", app.address)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(field(&page.text().await.unwrap(), "next").as_deref(), Some("/admin"));
}
