//! `Stripe-Version`: the API version a request is served with. As on
//! Stripe, a request without the header is served with the account's default
//! version (it is not refused), and one naming no version Stripe has released
//! is refused with 400 `invalid_request_error` "Invalid Stripe API version: …".
//!
//! The objects the sandbox returns have the shape of versions from
//! 2022-08-01 on, whatever the version; the one behaviour that follows the
//! version is what a PaymentIntent accepts when neither
//! `automatic_payment_methods` nor `payment_method_types` is given (see
//! [`Version::automatic_payment_methods_by_default`]).

use actix_web::http::header::HeaderMap;
use chrono::NaiveDate;

use super::error::{StripeError, truncate};

/// Every version Stripe has released, oldest first: the `api_version` enum of
/// `POST /v1/webhook_endpoints` in Stripe's OpenAPI specification (as the
/// `stripe` Python library 16.1.0 ships it). A version dated after the last
/// one is taken too, if it is well formed and not in the future (see
/// [`serve_on`]): Stripe releases one a month, and the official libraries pin
/// the newest.
#[rustfmt::skip]
pub const KNOWN: &[&str] = &[
    "2011-01-01", "2011-06-21", "2011-06-28", "2011-08-01", "2011-09-15", "2011-11-17", "2012-02-23", "2012-03-25",
    "2012-06-18", "2012-06-28", "2012-07-09", "2012-09-24", "2012-10-26", "2012-11-07", "2013-02-11", "2013-02-13",
    "2013-07-05", "2013-08-12", "2013-08-13", "2013-10-29", "2013-12-03", "2014-01-31", "2014-03-13", "2014-03-28",
    "2014-05-19", "2014-06-13", "2014-06-17", "2014-07-22", "2014-07-26", "2014-08-04", "2014-08-20", "2014-09-08",
    "2014-10-07", "2014-11-05", "2014-11-20", "2014-12-08", "2014-12-17", "2014-12-22", "2015-01-11", "2015-01-26",
    "2015-02-10", "2015-02-16", "2015-02-18", "2015-03-24", "2015-04-07", "2015-06-15", "2015-07-07", "2015-07-13",
    "2015-07-28", "2015-08-07", "2015-08-19", "2015-09-03", "2015-09-08", "2015-09-23", "2015-10-01", "2015-10-12",
    "2015-10-16", "2016-02-03", "2016-02-19", "2016-02-22", "2016-02-23", "2016-02-29", "2016-03-07", "2016-06-15",
    "2016-07-06", "2016-10-19", "2017-01-27", "2017-02-14", "2017-04-06", "2017-05-25", "2017-06-05", "2017-08-15",
    "2017-12-14", "2018-01-23", "2018-02-05", "2018-02-06", "2018-02-28", "2018-05-21", "2018-07-27", "2018-08-23",
    "2018-09-06", "2018-09-24", "2018-10-31", "2018-11-08", "2019-02-11", "2019-02-19", "2019-03-14", "2019-05-16",
    "2019-08-14", "2019-09-09", "2019-10-08", "2019-10-17", "2019-11-05", "2019-12-03", "2020-03-02", "2020-08-27",
    "2022-08-01", "2022-11-15", "2023-08-16", "2023-10-16", "2024-04-10", "2024-06-20", "2024-09-30.acacia",
    "2024-10-28.acacia", "2024-11-20.acacia", "2024-12-18.acacia", "2025-01-27.acacia", "2025-02-24.acacia",
    "2025-03-01.dashboard", "2025-03-31.basil", "2025-04-30.basil", "2025-05-28.basil", "2025-06-30.basil",
    "2025-07-30.basil", "2025-08-27.basil", "2025-09-30.clover", "2025-10-29.clover", "2025-11-17.clover",
    "2025-12-15.clover", "2026-01-28.clover", "2026-02-25.clover", "2026-03-25.dahlia", "2026-04-22.dahlia",
    "2026-05-27.dahlia", "2026-06-24.dahlia", "2026-07-29.dahlia", "2026-08-26.dahlia", "2026-09-30.endive",
    "2026-10-28.endive",
];

/// The sandbox account's default version, for requests without the header:
/// the newest, as for an account opened today.
pub const ACCOUNT_DEFAULT: &str = KNOWN[KNOWN.len() - 1];

/// From this version on, a PaymentIntent given neither
/// `automatic_payment_methods` nor `payment_method_types` accepts the payment
/// methods enabled in the Dashboard, redirects included (before: cards only).
const AUTOMATIC_PAYMENT_METHODS_SINCE: &str = "2023-08-16";

/// Most characters of a bad version echoed back or logged.
const MAX_ECHO_CHARS: usize = 64;

/// The version a request is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(String);

impl Version {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `YYYY-MM-DD`, which orders versions.
    fn date(&self) -> &str {
        &self.0[..10]
    }

    /// Whether a PaymentIntent that names neither `automatic_payment_methods`
    /// nor `payment_method_types` gets automatic payment methods, redirects
    /// allowed (so that confirming it needs a `return_url`).
    pub fn automatic_payment_methods_by_default(&self) -> bool {
        self.date() >= AUTOMATIC_PAYMENT_METHODS_SINCE
    }
}

/// The `Stripe-Version` header as sent, for the request log: `None` if
/// absent; several are joined with ", " as Stripe reads them; bytes that
/// are not text are replaced; at most [`MAX_ECHO_CHARS`] characters.
pub fn sent(headers: &HeaderMap) -> Option<String> {
    let values: Vec<String> =
        headers.get_all("Stripe-Version").map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string()).collect();
    (!values.is_empty()).then(|| truncate(&values.join(", "), MAX_ECHO_CHARS))
}

/// The version a request with `sent` (from [`sent`]) is served with, today.
pub fn serve(sent: Option<&str>) -> Result<Version, StripeError> {
    serve_on(sent, chrono::Utc::now().date_naive())
}

/// A known version; or one after the newest known, well formed
/// (`YYYY-MM-DD.name`) and dated no later than `today`; or, with no header,
/// the account's default.
pub fn serve_on(sent: Option<&str>, today: NaiveDate) -> Result<Version, StripeError> {
    let Some(sent) = sent else {
        return Ok(Version(ACCOUNT_DEFAULT.to_string()));
    };
    if KNOWN.contains(&sent) || is_newer_release(sent, today) {
        return Ok(Version(sent.to_string()));
    }
    Err(StripeError::InvalidRequest { code: None, param: None, message: format!("Invalid Stripe API version: {sent}") })
}

/// `YYYY-MM-DD.name` dated after the newest known version and not after `today`.
fn is_newer_release(sent: &str, today: NaiveDate) -> bool {
    let Some((date, name)) = sent.split_once('.') else {
        return false;
    };
    let Ok(day) = NaiveDate::parse_from_str(date, "%Y-%m-%d") else {
        return false;
    };
    let well_formed = date.len() == 10 && !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase());
    well_formed && date > &ACCOUNT_DEFAULT[..10] && day <= today
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_list_is_in_order_and_well_formed() {
        assert!(KNOWN.windows(2).all(|w| w[0] < w[1]), "oldest first, no duplicates");
        for v in KNOWN {
            assert!(NaiveDate::parse_from_str(&v[..10], "%Y-%m-%d").is_ok(), "{v}");
            assert!(v.len() == 10 || v.as_bytes()[10] == b'.', "{v}");
        }
    }

    #[test]
    fn known_versions_and_no_header_are_served() {
        let today = day("2026-11-28");
        assert_eq!(serve_on(Some("2026-03-25.dahlia"), today).unwrap().as_str(), "2026-03-25.dahlia");
        assert_eq!(serve_on(Some("2020-08-27"), today).unwrap().as_str(), "2020-08-27");
        assert_eq!(serve_on(None, today).unwrap().as_str(), ACCOUNT_DEFAULT);
    }

    #[test]
    fn unknown_and_malformed_versions_are_refused() {
        let today = day("2026-11-28");
        for bad in [
            "",
            "latest",
            "2019-2-19",
            "2023-01-01",             // well formed, never released
            "2025-09-30.acacia",      // a real date with another release's name
            "2026-03-25",             // named releases need their name
            "2026-11-25.Endive",      // names are lower case
            "2026-11-31.endive",      // no such day
            "2026-12-16.endive",      // after today
            "2019-05-16, 2019-12-03", // two headers
        ] {
            let err = serve_on(Some(bad), today).unwrap_err();
            assert_eq!(err.to_string(), format!("Invalid Stripe API version: {bad}"), "{bad:?}");
        }
    }

    #[test]
    fn a_release_after_the_newest_known_one_is_taken() {
        let today = day("2026-11-28");
        assert_eq!(serve_on(Some("2026-11-25.endive"), today).unwrap().as_str(), "2026-11-25.endive");
        assert_eq!(serve_on(Some("2026-11-28.fig"), today).unwrap().as_str(), "2026-11-28.fig");
    }

    #[test]
    fn automatic_payment_methods_default_on_from_2023_08_16() {
        let today = day("2026-11-28");
        let by_default = |v| serve_on(Some(v), today).unwrap().automatic_payment_methods_by_default();
        assert!(!by_default("2022-11-15"));
        assert!(by_default("2023-08-16"));
        assert!(by_default("2026-03-25.dahlia"));
        assert!(serve_on(None, today).unwrap().automatic_payment_methods_by_default());
    }

    #[test]
    fn what_was_sent_is_kept_for_the_log() {
        use actix_web::http::header::{HeaderName, HeaderValue};
        let name = HeaderName::from_static("stripe-version");
        let mut headers = HeaderMap::new();
        assert_eq!(sent(&headers), None);
        headers.append(name.clone(), HeaderValue::from_static("2019-05-16"));
        assert_eq!(sent(&headers).as_deref(), Some("2019-05-16"));
        headers.append(name.clone(), HeaderValue::from_static("2019-12-03"));
        assert_eq!(sent(&headers).as_deref(), Some("2019-05-16, 2019-12-03"));
        let mut long = HeaderMap::new();
        long.insert(name, HeaderValue::from_str(&"9".repeat(500)).unwrap());
        assert_eq!(sent(&long).unwrap().len(), MAX_ECHO_CHARS);
    }
}
