//! The merchant's balance at the sandbox: one balance transaction per money
//! movement (charge, refund, transfer, daily payout, dispute withdrawal and
//! reversal), written in the transaction that moves the money, each movement
//! booked once (unique category and `source_id`: a dispute has its
//! withdrawal and its reversal). Fees are charged on charges (a percentage
//! and a fixed part) and on dispute withdrawals (a fixed fee in major units).

use rusqlite::{Connection, params};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use super::ids::new_id;
use super::params::Metadata;
use crate::money::Currency;

/// The rounding rule of fees: half-up (away from zero) to the minor unit.
pub const FEE_ROUNDING: RoundingStrategy = RoundingStrategy::MidpointAwayFromZero;

/// `fee_percent` of `amount_minor` rounded by [`FEE_ROUNDING`], plus `fee_fixed_minor`.
pub fn fee_minor(amount_minor: i64, fee_percent: Decimal, fee_fixed_minor: i64) -> anyhow::Result<i64> {
    let percent_part = (Decimal::from(amount_minor) * fee_percent / Decimal::ONE_HUNDRED)
        .round_dp_with_strategy(0, FEE_ROUNDING)
        .to_i64()
        .ok_or_else(|| anyhow::anyhow!("fee out of range"))?;
    percent_part.checked_add(fee_fixed_minor).ok_or_else(|| anyhow::anyhow!("fee out of range"))
}

/// A fee given in major units (`dispute_fee`, "15.00") in minor units of
/// `currency` (lower-case, as stored), rounded by [`FEE_ROUNDING`] to its
/// exponent: 15.00 is 1500 US cents, 15 yen, 15000 fils.
pub fn major_fee_minor(fee_major: Decimal, currency: &str) -> anyhow::Result<i64> {
    let currency =
        Currency::parse(&currency.to_uppercase()).map_err(|e| anyhow::anyhow!("fee in currency {currency}: {e}"))?;
    let scale = Decimal::from(10_i64.pow(currency.exponent()));
    fee_major
        .checked_mul(scale)
        .map(|minor| minor.round_dp_with_strategy(0, FEE_ROUNDING))
        .and_then(|minor| minor.to_i64())
        .ok_or_else(|| anyhow::anyhow!("fee out of range"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Charge,
    Refund,
    Transfer,
    Payout,
    /// A dispute's withdrawal of the disputed amount and its fee.
    Dispute,
    /// A won dispute's amount given back.
    DisputeReversal,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Charge => "charge",
            Category::Refund => "refund",
            Category::Transfer => "transfer",
            Category::Payout => "payout",
            Category::Dispute => "dispute",
            Category::DisputeReversal => "dispute_reversal",
        }
    }
}

/// A balance transaction as Stripe shows it (inside a dispute's
/// `balance_transactions`).
#[derive(Debug, Clone, Serialize)]
pub struct BalanceTransaction {
    pub id: String,
    pub object: &'static str,
    pub amount: i64,
    pub available_on: i64,
    pub created: i64,
    pub currency: String,
    pub description: Option<String>,
    pub fee: i64,
    pub net: i64,
    pub reporting_category: String,
    pub source: String,
    pub status: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// Stripe's `type` of a line of `reporting_category`.
fn stripe_type(category: &str) -> &'static str {
    match category {
        "charge" => "charge",
        "refund" => "refund",
        "transfer" => "transfer",
        "payout" => "payout",
        _ => "adjustment",
    }
}

/// The lines whose source is `source_id` (a dispute has at most two), oldest first.
pub fn for_source(conn: &Connection, source_id: &str) -> anyhow::Result<Vec<BalanceTransaction>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, amount, available_on, created, currency, description, fee, net, reporting_category
         FROM balance_transactions WHERE source_id = ?1 ORDER BY created, rowid LIMIT 10",
    )?;
    let lines = stmt
        .query_map([source_id], |r| {
            let category: String = r.get(8)?;
            Ok(BalanceTransaction {
                id: r.get(0)?,
                object: "balance_transaction",
                amount: r.get(1)?,
                available_on: r.get(2)?,
                created: r.get(3)?,
                currency: r.get(4)?,
                description: r.get(5)?,
                fee: r.get(6)?,
                net: r.get(7)?,
                kind: stripe_type(&category),
                reporting_category: category,
                source: source_id.to_string(),
                // No hold at the sandbox: available at once.
                status: "available",
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lines)
}

/// One movement; `amount` is signed: money in is positive.
pub struct Entry<'a> {
    pub created: i64,
    pub currency: &'a str,
    pub amount: i64,
    pub fee: i64,
    pub category: Category,
    pub source_id: &'a str,
    pub payment_intent: Option<&'a str>,
    pub description: Option<&'a str>,
    pub payment_metadata: &'a Metadata,
}

/// Books one movement; returns the `txn_…` id.
pub fn book(conn: &Connection, entry: &Entry<'_>) -> anyhow::Result<String> {
    anyhow::ensure!(entry.fee >= 0, "a fee is never negative");
    let net = entry.amount.checked_sub(entry.fee).ok_or_else(|| anyhow::anyhow!("net out of range"))?;
    let id = new_id("txn_");
    conn.execute(
        "INSERT INTO balance_transactions (id, created, available_on, currency, amount, fee, net,
             reporting_category, source_id, payment_intent, description, payment_metadata)
         VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            id,
            entry.created,
            entry.currency,
            entry.amount,
            entry.fee,
            net,
            entry.category.as_str(),
            entry.source_id,
            entry.payment_intent,
            entry.description,
            serde_json::to_string(entry.payment_metadata)?,
        ],
    )?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_round_half_up_to_the_minor_unit() {
        let pct = Decimal::new(29, 1); // 2.9 %
        assert_eq!(fee_minor(2500, pct, 30).unwrap(), 73 + 30); // 72.5 → 73
        assert_eq!(fee_minor(1000, pct, 30).unwrap(), 29 + 30);
        assert_eq!(fee_minor(1, pct, 0).unwrap(), 0); // 0.029 → 0
        assert_eq!(fee_minor(50, Decimal::ONE, 0).unwrap(), 1); // 0.5 → 1
        assert_eq!(fee_minor(49, Decimal::ONE, 0).unwrap(), 0);
        assert_eq!(fee_minor(2500, Decimal::ZERO, 0).unwrap(), 0);
    }

    #[test]
    fn major_unit_fees_follow_each_currency_exponent() {
        let fifteen = Decimal::new(1500, 2);
        assert_eq!(major_fee_minor(fifteen, "usd").unwrap(), 1500);
        assert_eq!(major_fee_minor(fifteen, "jpy").unwrap(), 15);
        assert_eq!(major_fee_minor(fifteen, "bhd").unwrap(), 15_000);
        assert_eq!(major_fee_minor(Decimal::new(1234, 3), "usd").unwrap(), 123); // 123.4 → 123
        assert_eq!(major_fee_minor(Decimal::new(1235, 3), "usd").unwrap(), 124); // 123.5 → 124
        assert_eq!(major_fee_minor(Decimal::new(155, 1), "jpy").unwrap(), 16); // 15.5 → 16
        assert_eq!(major_fee_minor(Decimal::ZERO, "eur").unwrap(), 0);
        assert!(major_fee_minor(fifteen, "zzz").is_err());
    }
}
