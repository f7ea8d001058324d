//! Read models of the dashboard's pages: one query function per page that
//! returns a typed view with amounts and times already formatted, so that
//! templates only lay them out.

pub mod chart;
pub mod disputes;
pub mod ledger;
pub mod lists;
pub mod ops;
pub mod overview;
pub mod payments;
pub mod reconciliation;
pub mod sellers;
pub mod webhooks;

use crate::admin::format;
use crate::db::{Tx, params};

/// One ledger entry as the journal shows it: debit or credit, formatted.
#[derive(Debug, Clone)]
pub struct EntryRow {
    pub account_id: i64,
    pub account: String,
    pub debit: String,
    pub credit: String,
}

impl EntryRow {
    pub fn new(account_id: i64, account: String, amount_minor: i64, currency: &str) -> EntryRow {
        let (debit, credit) = if amount_minor >= 0 {
            (format::money(amount_minor, currency), String::new())
        } else {
            (String::new(), format::money(-amount_minor, currency))
        };
        EntryRow { account_id, account, debit, credit }
    }
}

/// One ledger transaction with its entries.
#[derive(Debug, Clone)]
pub struct JournalRow {
    pub id: i64,
    pub source_type: String,
    pub source_id: String,
    /// Where the source can be seen in the dashboard, if anywhere.
    pub source_link: Option<String>,
    pub description: String,
    pub created_at: String,
    pub entries: Vec<EntryRow>,
}

/// Loads one ledger transaction by its id, with its entries.
pub fn journal_row(tx: &Tx, id: i64) -> anyhow::Result<Option<JournalRow>> {
    let head = tx.query_opt(
        "SELECT t.id, t.source_type, t.source_id, t.description, t.created_at, t.currency,
                (SELECT o.checkout_id FROM payment_orders o WHERE t.source_type = 'payment_order'
                    AND o.payment_order_id = t.source_id),
                (SELECT o.checkout_id FROM refunds r JOIN payment_orders o ON o.payment_order_id = r.payment_order_id
                    WHERE t.source_type IN ('refund', 'refund_reversal') AND r.refund_id = t.source_id),
                (SELECT p.seller_id FROM payouts p WHERE t.source_type LIKE 'payout%' AND p.payout_id = t.source_id),
                (SELECT d.checkout_id FROM disputes d WHERE t.source_type IN ('dispute', 'dispute_reversal')
                    AND d.dispute_id = t.source_id)
         FROM ledger_transactions t WHERE t.id = $1",
        params![id],
        |r| {
            let checkout: Option<String> = r.get(6)?;
            let refund_checkout: Option<String> = r.get(7)?;
            let seller: Option<String> = r.get(8)?;
            let dispute_checkout: Option<String> = r.get(9)?;
            let link = checkout
                .or(refund_checkout)
                .or(dispute_checkout)
                .map(|c| format!("/admin/payments/{c}"))
                .or_else(|| seller.map(|s| format!("/admin/sellers/{s}")));
            Ok((
                JournalRow {
                    id: r.get(0)?,
                    source_type: r.get(1)?,
                    source_id: r.get(2)?,
                    source_link: link,
                    description: r.get(3)?,
                    created_at: format::time(&r.get::<String>(4)?),
                    entries: Vec::new(),
                },
                r.get::<String>(5)?,
            ))
        },
    )?;
    let Some((mut row, currency)) = head else { return Ok(None) };
    row.entries = tx.query_map(
        "SELECT a.id, a.name, e.amount_minor FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
         WHERE e.transaction_id = $1 ORDER BY e.amount_minor DESC, e.id",
        params![id],
        |r| Ok(EntryRow::new(r.get(0)?, r.get(1)?, r.get(2)?, &currency)),
    )?;
    Ok(Some(row))
}

/// A status as a CSS class: "SUCCESS" → "st-success".
pub fn status_class(status: &str) -> String {
    format!("st-{}", status.to_ascii_lowercase().replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_order_and_dispute_status_has_a_pill_colour() {
        const CSS: &str = include_str!("../../../static/admin.css");
        let orders = crate::payments::model::OrderStatus::ALL.map(|s| s.as_str());
        let disputes = crate::disputes::DisputeStatus::ALL.map(|s| s.as_str());
        assert_eq!(status_class("AUTHORIZED"), "st-authorized");
        assert_eq!(status_class("needs_response"), "st-needs-response");
        for status in orders.iter().chain(&disputes) {
            let class = status_class(status);
            assert!(
                CSS.contains(&format!(".{class} ")) || CSS.contains(&format!(".{class},")),
                "no colour for {class}"
            );
        }
    }
}
