//! The merchant's balance at the sandbox: one balance transaction per money
//! movement (charge, refund, transfer, daily payout), written in the
//! transaction that moves the money, each source booked once (unique
//! `source_id`). Fees are charged on charges only.

use rusqlite::{Connection, params};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use super::ids::new_id;
use super::params::Metadata;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Charge,
    Refund,
    Transfer,
    Payout,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Charge => "charge",
            Category::Refund => "refund",
            Category::Transfer => "transfer",
            Category::Payout => "payout",
        }
    }
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
}
