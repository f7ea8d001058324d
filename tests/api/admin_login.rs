//! Signing in to the dashboard under attack: a `next` that tries to write a
//! response header.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::admin::{EMAIL, PASSWORD, create_staff, field};
use crate::helpers::{TestApp, spawn_app_with};

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
