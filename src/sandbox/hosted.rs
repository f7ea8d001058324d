//! The hosted payment page `/pay/{session_id}`: the only place a card number
//! is typed. The number is reduced to brand and last four digits as soon as
//! it is parsed (`cards`), never stored, never logged, never echoed back.
//! Faults never apply here.
//!
//! The page holds no cookie or other ambient authority, so a form posted from
//! another site can do nothing its author could not do with curl; still, a
//! buyer's browser must not be made to pay from a page that is not this one.
//! A POST whose `Origin` (or, without one, `Referer`) names another site is
//! refused; one naming neither is served, as the Stripe libraries' tests and
//! curl send none and browsers always send `Origin` on a cross-site POST.
//! No per-session form token: one derived from the session id would be in
//! the page, which anyone holding the session's link can fetch, so it would
//! prove nothing the link does not.

use std::fmt;

use askama::Template;
use reqwest::Url;
use serde::Deserialize;

use super::Sandbox;
use super::cards::{self, Outcome, TEST_CARDS};
use super::checkout::{self, CheckoutSession, LineItem, PayResult};
use super::ids::now_s;
use crate::money::{Currency, format_minor};

/// Largest form body accepted.
pub const MAX_FORM_BYTES: usize = 4 * 1024;

/// What the buyer typed. `Debug` shows no card data.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PayForm {
    pub card_number: String,
    pub exp_month: String,
    pub exp_year: String,
    pub cvc: String,
}

impl fmt::Debug for PayForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PayForm { <redacted> }")
    }
}

/// What to answer.
pub enum Shown {
    Html { status: u16, html: String },
    Redirect(String),
}

struct ItemView {
    name: String,
    quantity: i64,
    unit: String,
    total: String,
}

struct CardHint {
    number: String,
    description: &'static str,
}

#[derive(Template)]
#[template(path = "sandbox/pay.html")]
struct PayPage {
    session_id: String,
    items: Vec<ItemView>,
    total: String,
    cancel_url: Option<String>,
    closed: Option<&'static str>,
    error: Option<String>,
    exp_month: String,
    exp_year: String,
    test_cards: Vec<CardHint>,
}

#[derive(Template)]
#[template(path = "sandbox/not_found.html")]
struct NotFoundPage;

#[derive(Template)]
#[template(path = "sandbox/refused.html")]
struct RefusedPage;

/// Where a form POST says it comes from, and the host it was sent to.
pub struct FormSender<'a> {
    pub origin: Option<&'a str>,
    pub referer: Option<&'a str>,
    /// The `Host` the request was made to (or a proxy's `X-Forwarded-Host`,
    /// which a cross-site form cannot set).
    pub host: &'a str,
}

impl FormSender<'_> {
    /// Whether the form comes from this site: from the host it was posted
    /// to, or from the sandbox's bound address. `Origin` wins over `Referer`;
    /// with neither, the request is not a browser's cross-site form.
    fn is_this_site(&self, base_url: &str) -> bool {
        let Some(claimed) = self.origin.or(self.referer) else {
            return true;
        };
        // "null" (a sandboxed frame, a privacy redirect) and junk do not parse.
        let Ok(claimed) = Url::parse(claimed) else {
            return false;
        };
        if !matches!(claimed.scheme(), "http" | "https") {
            return false;
        }
        // The Host header has no scheme: read it with the claimed one, so
        // default ports compare equal ("shop.example" and ":443").
        let same_host = Url::parse(&format!("{}://{}", claimed.scheme(), self.host)).is_ok_and(|host| {
            host.host() == claimed.host() && host.port_or_known_default() == claimed.port_or_known_default()
        });
        same_host || Url::parse(base_url).is_ok_and(|base| base.origin() == claimed.origin())
    }
}

/// `GET /pay/{id}`.
pub async fn view(sb: &Sandbox, id: String) -> anyhow::Result<Shown> {
    let page = load_page(sb, id).await?;
    Ok(match page {
        Some(page) => html(200, &page)?,
        None => html(404, &NotFoundPage)?,
    })
}

/// `POST /pay/{id}`: pay with a test card, or show why not.
pub async fn submit(sb: &Sandbox, id: String, form: PayForm, sender: &FormSender<'_>) -> anyhow::Result<Shown> {
    if !sender.is_this_site(&sb.shared.base_url) {
        tracing::warn!(session = %id, origin = ?sender.origin, referer = ?sender.referer, "a cross-site payment form was refused");
        return html(403, &RefusedPage);
    }
    let Some(mut page) = load_page(sb, id.clone()).await? else {
        return html(404, &NotFoundPage);
    };
    if page.closed.is_some() {
        return html(409, &page);
    }
    page.exp_month = clip(&form.exp_month, 2);
    page.exp_year = clip(&form.exp_year, 4);
    let card = match cards::parse_card(&form.card_number, &form.exp_month, &form.exp_year, &form.cvc) {
        Ok(card) => card,
        Err(problem) => {
            page.error = Some(problem.message.to_string());
            return html(400, &page);
        }
    };
    drop(form);
    if let Outcome::Decline(decline) = card.outcome {
        page.error = Some(format!("{} Try another card.", decline.message));
        return html(402, &page);
    }
    let sandbox_id = id.clone();
    let shared = sb.shared.clone();
    let result = sb.db.write_sqlite(move |tx| checkout::pay(tx, &shared, &sandbox_id, &card)).await?;
    sb.shared.wake_delivery.notify_one();
    match result {
        PayResult::Paid { redirect_to } => Ok(Shown::Redirect(redirect_to)),
        PayResult::Closed(status) => {
            page.closed = Some(closed_message(&status));
            html(409, &page)
        }
    }
}

fn clip(s: &str, max: usize) -> String {
    s.chars().filter(char::is_ascii_digit).take(max).collect()
}

fn html<T: Template>(status: u16, page: &T) -> anyhow::Result<Shown> {
    Ok(Shown::Html { status, html: page.render()? })
}

async fn load_page(sb: &Sandbox, id: String) -> anyhow::Result<Option<PayPage>> {
    let shared = sb.shared.clone();
    sb.db
        .run_sqlite(move |conn| {
            let Some(session) = checkout::load(conn, &shared, &id)? else {
                return Ok(None);
            };
            let items = checkout::line_items(conn, &id)?;
            Ok(Some(page_for(&session, &items)))
        })
        .await
}

fn page_for(session: &CheckoutSession, items: &[LineItem]) -> PayPage {
    let amount = |minor: i64| show_amount(minor, &session.currency);
    // An open session past its expiry is shown expired; the ticker records it.
    let status =
        if session.status == "open" && session.expires_at <= now_s() { "expired" } else { session.status.as_str() };
    PayPage {
        session_id: session.id.clone(),
        items: items
            .iter()
            .map(|item| ItemView {
                name: item.name.clone(),
                quantity: item.quantity,
                unit: amount(item.unit_amount),
                total: amount(item.amount_total),
            })
            .collect(),
        total: amount(session.amount_total),
        cancel_url: session.cancel_url.clone(),
        closed: (status != "open").then(|| closed_message(status)),
        error: None,
        exp_month: String::new(),
        exp_year: String::new(),
        test_cards: TEST_CARDS
            .iter()
            .map(|c| CardHint { number: group_digits(c.number), description: c.description })
            .collect(),
    }
}

fn closed_message(status: &str) -> &'static str {
    match status {
        "complete" => "This checkout has been paid. Thank you!",
        "expired" => "This checkout session has expired. Return to the shop to start again.",
        _ => "This checkout session can no longer be paid.",
    }
}

/// "25.00 USD"; the currency's own exponent.
fn show_amount(minor: i64, currency: &str) -> String {
    let code = currency.to_uppercase();
    match Currency::parse(&code) {
        Ok(c) => format!("{} {code}", format_minor(minor, c)),
        Err(_) => format!("{minor} {code} (minor units)"),
    }
}

fn group_digits(number: &str) -> String {
    number.as_bytes().chunks(4).map(|chunk| String::from_utf8_lossy(chunk).into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_use_each_currency_exponent() {
        assert_eq!(show_amount(2500, "usd"), "25.00 USD");
        assert_eq!(show_amount(1000, "krw"), "1000 KRW");
        assert_eq!(show_amount(1250, "bhd"), "1.250 BHD");
        assert_eq!(group_digits("4242424242424242"), "4242 4242 4242 4242");
    }

    #[test]
    fn only_forms_from_this_site_may_pay() {
        let base = "http://127.0.0.1:8081";
        let from = |origin, referer, host| FormSender { origin, referer, host }.is_this_site(base);
        let this_site = [
            (None, None, "127.0.0.1:8081"),
            (Some("http://127.0.0.1:8081"), None, "127.0.0.1:8081"),
            (Some("http://127.0.0.1:8081"), None, "proxy.internal"),
            (Some("https://pay.example"), None, "pay.example"),
            (Some("https://pay.example"), None, "PAY.example:443"),
            (Some("http://[::1]:8081"), None, "[::1]:8081"),
            (None, Some("http://localhost:8081/pay/cs_1?x=1"), "localhost:8081"),
        ];
        for (origin, referer, host) in this_site {
            assert!(from(origin, referer, host), "{origin:?} {referer:?} to {host}");
        }
        let another_site = [
            (Some("https://evil.example"), None, "127.0.0.1:8081"),
            (Some("https://evil.example"), Some("http://127.0.0.1:8081/pay/cs_1"), "127.0.0.1:8081"),
            (Some("null"), None, "127.0.0.1:8081"),
            (Some(""), None, "127.0.0.1:8081"),
            (Some("http://127.0.0.1:9999"), None, "127.0.0.1:8081"),
            (Some("https://127.0.0.1:8081"), None, "localhost:8081"),
            (Some("https://pay.example.evil.example"), None, "pay.example"),
            (Some("file:///tmp/x.html"), None, "127.0.0.1:8081"),
            (None, Some("https://evil.example/shop"), "127.0.0.1:8081"),
        ];
        for (origin, referer, host) in another_site {
            assert!(!from(origin, referer, host), "{origin:?} {referer:?} to {host}");
        }
    }

    #[test]
    fn the_form_never_shows_card_data() {
        let form = PayForm { card_number: "4242424242424242".into(), ..PayForm::default() };
        assert!(!format!("{form:?}").contains("4242"));
    }
}
