//! How the dashboard writes amounts and times: amounts in their currency's
//! decimals with thousands separated and the code beside them
//! ("1,234.50 USD", "1,000 JPY"); times in UTC, saying so.

use crate::money::{Currency, format_minor};

/// `(123450, "USD")` → "1,234.50 USD". An unknown code (never stored by
/// till itself) shows the raw minor units rather than a guess.
pub fn money(amount_minor: i64, code: &str) -> String {
    match Currency::parse(code) {
        Ok(currency) => format!("{} {code}", group_thousands(&format_minor(amount_minor, currency))),
        Err(_) => format!("{amount_minor} (minor units) {code}"),
    }
}

/// The amount alone, as a form field wants it: "1234.50".
pub fn plain_amount(amount_minor: i64, code: &str) -> String {
    Currency::parse(code).map_or_else(|_| amount_minor.to_string(), |c| format_minor(amount_minor, c))
}

/// A count with its thousands separated: 20000 → "20,000".
pub fn count(n: usize) -> String {
    group_thousands(&n.to_string())
}

fn group_thousands(decimal: &str) -> String {
    let (sign, rest) = decimal.strip_prefix('-').map_or(("", decimal), |r| ("-", r));
    let (int, frac) = rest.split_once('.').map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A stored RFC 3339 time → "2026-11-01 14:03:07 UTC".
pub fn time(stored: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(stored) {
        Ok(t) => t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => stored.to_string(),
    }
}

/// Unix milliseconds → "2026-11-01 14:03:07 UTC".
pub fn time_ms(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map_or_else(|| unix_ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// The first characters of a long id, for tables (the full id is in the link).
pub fn short_id(id: &str) -> String {
    if id.chars().count() <= 13 { id.to_string() } else { format!("{}…", id.chars().take(8).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_use_each_currency_decimals_and_group_thousands() {
        assert_eq!(money(123_450, "USD"), "1,234.50 USD");
        assert_eq!(money(5, "USD"), "0.05 USD");
        assert_eq!(money(1_000, "JPY"), "1,000 JPY");
        assert_eq!(money(1_234_567, "KRW"), "1,234,567 KRW");
        assert_eq!(money(1_250, "BHD"), "1.250 BHD");
        assert_eq!(money(-10_000_000, "EUR"), "-100,000.00 EUR");
        assert_eq!(money(999, "USD"), "9.99 USD");
        assert_eq!(plain_amount(2500, "USD"), "25.00");
        assert_eq!((count(20_000), count(999)), ("20,000".to_string(), "999".to_string()));
    }

    #[test]
    fn times_are_utc_and_say_so() {
        assert_eq!(time("2026-11-01T14:03:07.123Z"), "2026-11-01 14:03:07 UTC");
        assert_eq!(time("2026-11-01T16:03:07+02:00"), "2026-11-01 14:03:07 UTC");
        assert_eq!(time("garbage"), "garbage");
        assert_eq!(time_ms(0), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn short_ids_keep_short_ones_whole() {
        assert_eq!(short_id("seller_a"), "seller_a");
        assert_eq!(short_id("1f0c7a0e-3a57-4b5b-9a4c-2b8e0f0f6d11"), "1f0c7a0e…");
    }
}
