//! Money: an amount in integer minor units (i64) always beside its currency.
//! On the wire amounts are decimal strings in major units ("25.00"); inside
//! they are never floats.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// An ISO 4217 currency with its number of decimals (its exponent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("'{0}' is not an ISO 4217 currency code (three upper-case letters, e.g. USD)")]
    UnknownCurrency(String),
    #[error("'{0}' is not a decimal amount in major units, like \"25.00\"")]
    NotADecimal(String),
    #[error("has {scale} decimals; {currency} allows {exponent}")]
    TooManyDecimals { scale: u32, currency: Currency, exponent: u32 },
    #[error("must be greater than zero")]
    NotPositive,
    #[error("is too large")]
    TooLarge,
    #[error("is more than the PSP takes in one charge ({max} {currency})")]
    AbovePspLimit { max: String, currency: Currency },
}

impl MoneyError {
    /// The stable API error code for this problem.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::UnknownCurrency(_) => "currency_invalid",
            MoneyError::NotADecimal(_)
            | MoneyError::TooManyDecimals { .. }
            | MoneyError::NotPositive
            | MoneyError::TooLarge
            | MoneyError::AbovePspLimit { .. } => "amount_invalid",
        }
    }
}

impl Currency {
    /// Only the upper-case alphabetic code is accepted, as on till's API.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let valid_shape = code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase());
        let currency = valid_shape
            .then(|| iso_currency::Currency::from_code(code))
            .flatten()
            // Funds and precious metals (XAU, XDR, …) have no exponent: not money we move.
            .filter(|c| c.exponent().is_some())
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))?;
        Ok(Currency(currency))
    }

    pub fn code(&self) -> &'static str {
        // iso_currency's code() returns &'static str.
        self.0.code()
    }

    /// Number of decimals of the minor unit: USD 2, JPY 0, BHD 3.
    pub fn exponent(&self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(0))
    }

    /// The most one PSP charge may take, in minor units: Stripe's limit of
    /// eight digits of the minor unit ($999,999.99, ¥99,999,999), which the
    /// sandbox applies too. An amount above it is refused before anything
    /// is stored, never sent to fail at the PSP.
    pub fn max_charge_minor(&self) -> i64 {
        MAX_CHARGE_MINOR
    }

    /// Lower-case code, as Stripe's API writes currencies.
    pub fn stripe_code(&self) -> String {
        self.code().to_ascii_lowercase()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

// Stored as its code; read back through `parse`.
crate::sql_as_text!(Currency, Currency::code, |code: &str| Currency::parse(code).ok());

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

/// Stripe's largest charge in any currency's minor unit.
pub const MAX_CHARGE_MINOR: i64 = 99_999_999;

/// A strictly positive amount of one currency, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    /// Parses a major-unit decimal string: digits, optionally a point and at
    /// most the currency's exponent of decimals. No sign, no exponent, no spaces.
    pub fn parse(amount: &str, currency: Currency) -> Result<Money, MoneyError> {
        let minor = parse_minor(amount, currency)?;
        Money::from_minor(minor, currency)
    }

    pub fn from_minor(amount_minor: i64, currency: Currency) -> Result<Money, MoneyError> {
        if amount_minor <= 0 {
            return Err(MoneyError::NotPositive);
        }
        Ok(Money { amount_minor, currency })
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    /// This amount, if one PSP charge may take it.
    pub fn chargeable(self) -> Result<Money, MoneyError> {
        let max = self.currency.max_charge_minor();
        if self.amount_minor > max {
            return Err(MoneyError::AbovePspLimit { max: format_minor(max, self.currency), currency: self.currency });
        }
        Ok(self)
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", format_minor(self.amount_minor, self.currency), self.currency)
    }
}

/// Any signed minor-unit amount as a major-unit decimal string with exactly
/// the currency's decimals: (2500, USD) → "25.00", (1000, KRW) → "1000".
pub fn format_minor(amount_minor: i64, currency: Currency) -> String {
    Decimal::new(amount_minor, currency.exponent()).to_string()
}

/// Parses a non-negative major-unit amount into minor units (zero allowed;
/// callers that need a positive amount use [`Money::parse`]).
pub fn parse_minor(amount: &str, currency: Currency) -> Result<i64, MoneyError> {
    let not_decimal = || MoneyError::NotADecimal(amount.chars().take(40).collect());
    let (int_part, frac_part) = match amount.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (amount, None),
    };
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only(int_part) || !frac_part.is_none_or(digits_only) {
        // "-5.00" is a decimal, just not one we take: say so.
        if amount.strip_prefix('-').is_some_and(|rest| parse_minor(rest, currency).is_ok()) {
            return Err(MoneyError::NotPositive);
        }
        return Err(not_decimal());
    }
    // More than 28 significant digits cannot fit i64 minor units anyway.
    if amount.len() > 40 {
        return Err(MoneyError::TooLarge);
    }
    let value = Decimal::from_str_exact(amount).map_err(|_| MoneyError::TooLarge)?;
    let scale = frac_part.map_or(0, |f| f.len() as u32);
    let exponent = currency.exponent();
    if scale > exponent {
        return Err(MoneyError::TooManyDecimals { scale, currency, exponent });
    }
    let factor = Decimal::from_i128_with_scale(10_i128.pow(exponent), 0);
    value.checked_mul(factor).and_then(|m| m.to_i64()).ok_or(MoneyError::TooLarge)
}

/// `percent`% of an amount in minor units, rounded half away from zero to a
/// whole minor unit (commercial "half-up" rounding for positive amounts):
/// 2.9% of 1050 = 30.45 → 30; 10% of 25 = 2.5 → 3.
pub fn percentage_minor(amount_minor: i64, percent: Decimal) -> i64 {
    let exact = Decimal::from(amount_minor) * percent / Decimal::ONE_HUNDRED;
    exact
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
        // |percent| ≤ 100 (validated config), so the result fits whenever the amount does.
        .unwrap_or(amount_minor)
}

/// `total_minor` shared in proportion to `weights`, no share above its
/// `cap`. The rounding rule: each share rounded down, then what is left
/// given a minor unit at a time to the first shares still below their cap
/// (deterministic, and what a person checking by hand expects). The shares
/// add up to `total_minor`, or to the caps' sum if that is less. All
/// weights zero: shared by the caps.
pub fn share_in_proportion(total_minor: i64, weights: &[i64], caps: &[i64]) -> Vec<i64> {
    let weights = if weights.iter().sum::<i64>() > 0 { weights } else { caps };
    let sum: i128 = weights.iter().map(|w| i128::from(*w)).sum::<i128>().max(1);
    let total = total_minor.min(caps.iter().sum());
    let mut shares: Vec<i64> = weights
        .iter()
        .zip(caps)
        .map(|(w, cap)| ((i128::from(*w) * i128::from(total) / sum) as i64).min(*cap))
        .collect();
    let mut left = total - shares.iter().sum::<i64>();
    while left > 0 {
        let before = left;
        for (share, cap) in shares.iter_mut().zip(caps) {
            if left > 0 && *share < *cap {
                *share += 1;
                left -= 1;
            }
        }
        if left == before {
            break;
        }
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_shared_in_proportion_adds_up_and_keeps_to_the_caps() {
        assert_eq!(share_in_proportion(1750, &[2500, 1000, 1], &[2500, 1000, 1]), vec![1250, 500, 0]);
        assert_eq!(share_in_proportion(3501, &[2500, 1000, 1], &[2500, 1000, 1]), vec![2500, 1000, 1]);
        assert_eq!(share_in_proportion(10, &[1, 1, 1], &[9, 9, 9]), vec![4, 3, 3], "the remainder to the first");
        assert_eq!(share_in_proportion(5000, &[1], &[1000]), vec![1000], "never past a cap");
        assert_eq!(share_in_proportion(6, &[0, 0], &[4, 2]), vec![4, 2], "no weights: by the caps");
    }

    fn cur(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    #[test]
    fn parses_by_each_currency_exponent() {
        assert_eq!(Money::parse("25.00", cur("USD")).unwrap().amount_minor(), 2500);
        assert_eq!(Money::parse("25", cur("USD")).unwrap().amount_minor(), 2500);
        assert_eq!(Money::parse("25.5", cur("EUR")).unwrap().amount_minor(), 2550);
        assert_eq!(Money::parse("1000", cur("KRW")).unwrap().amount_minor(), 1000);
        assert_eq!(Money::parse("1.250", cur("BHD")).unwrap().amount_minor(), 1250);
        assert_eq!(Money::parse("0.01", cur("USD")).unwrap().amount_minor(), 1);
    }

    #[test]
    fn refuses_bad_amounts() {
        let usd = cur("USD");
        for bad in ["", "--1.00", "+1", "1e3", " 1.00", "1.00 ", "1,00", "abc", ".5", "5.", "NaN"] {
            assert!(matches!(Money::parse(bad, usd), Err(MoneyError::NotADecimal(_))), "{bad:?}");
        }
        assert!(matches!(Money::parse("0", usd), Err(MoneyError::NotPositive)));
        assert!(matches!(Money::parse("-5.00", usd), Err(MoneyError::NotPositive)));
        assert!(matches!(Money::parse("0.00", usd), Err(MoneyError::NotPositive)));
        assert!(matches!(Money::parse("1.001", usd), Err(MoneyError::TooManyDecimals { scale: 3, exponent: 2, .. })));
        assert!(matches!(Money::parse("1.5", cur("JPY")), Err(MoneyError::TooManyDecimals { .. })));
        assert_eq!(Money::parse("92233720368547758.08", usd), Err(MoneyError::TooLarge));
        assert_eq!(Money::parse(&"9".repeat(60), usd), Err(MoneyError::TooLarge));
        assert!(Money::parse("92233720368547758.07", usd).is_ok());
    }

    #[test]
    fn one_charge_takes_at_most_eight_digits_of_the_minor_unit() {
        assert!(Money::parse("999999.99", cur("USD")).unwrap().chargeable().is_ok());
        let big = Money::parse("1000000.00", cur("USD")).unwrap().chargeable().unwrap_err();
        assert_eq!(big.to_string(), "is more than the PSP takes in one charge (999999.99 USD)");
        assert!(Money::parse("99999999", cur("JPY")).unwrap().chargeable().is_ok());
        assert!(Money::parse("100000000", cur("JPY")).unwrap().chargeable().is_err());
    }

    #[test]
    fn refuses_bad_currencies() {
        for bad in ["usd", "US", "USDD", "XYZ", "XAU", "", "U$D"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn percentages_round_half_up() {
        let pct = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(percentage_minor(1050, pct("2.9")), 30);
        assert_eq!(percentage_minor(25, pct("10")), 3);
        assert_eq!(percentage_minor(2500, pct("0")), 0);
        assert_eq!(percentage_minor(2500, pct("100")), 2500);
        assert_eq!(percentage_minor(i64::MAX, pct("100")), i64::MAX);
    }

    #[test]
    fn formats_with_exact_decimals() {
        assert_eq!(format_minor(2500, cur("USD")), "25.00");
        assert_eq!(format_minor(5, cur("USD")), "0.05");
        assert_eq!(format_minor(1000, cur("KRW")), "1000");
        assert_eq!(format_minor(1250, cur("BHD")), "1.250");
        assert_eq!(format_minor(-150, cur("EUR")), "-1.50");
        assert_eq!(format_minor(0, cur("USD")), "0.00");
    }
}
