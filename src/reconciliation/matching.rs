//! Classifying one settlement line against till's records, inside the
//! caller's transaction. Exact keys only, strongest first: the PSP's ids
//! (`payment_intent_id`, refund and transfer ids) and the metadata till put
//! on the charge (`payment_order_id`, `checkout_id`). Nothing is matched on
//! amounts or times alone: a line no key ties to a record needs a person.

use super::model::{Class, Decision, RecordKind, TillRecord};
use super::parse::SettlementRow;
use super::store::{self, StoredRow};
use crate::db::{Tx, params};
use crate::payments::store::OrderAndMethod;
use crate::{disputes, payments, payouts, refunds};

/// Decides what one stored line is. `item_id` is the line's own decision
/// when it is re-matched after an automatic fix (its claim is its own).
pub fn classify(tx: &Tx, stored: &StoredRow, item_id: Option<i64>) -> anyhow::Result<Decision> {
    if item_id.is_none()
        && let Some(duplicate) = repeated_line(tx, stored)?
    {
        return Ok(duplicate);
    }
    let row = &stored.row;
    let decision = match row.reporting_category.as_str() {
        "charge" => match_charge(tx, row)?,
        "refund" => match_refund(tx, row)?,
        "transfer" => match_transfer(tx, row)?,
        "payout" => booked_from_file(row, RecordKind::BankPayout, "payout.booked_to_bank"),
        "fee" => booked_from_file(row, RecordKind::PspFee, "fee.booked_to_expenses"),
        "dispute" => match_dispute(tx, row, RecordKind::Dispute)?,
        "dispute_reversal" => match_dispute(tx, row, RecordKind::DisputeReversal)?,
        _ => Decision::new(Class::Unclassified, "category.unknown", None),
    };
    claim_or_duplicate(tx, decision, item_id)
}

/// A line seen before: the same balance transaction id earlier in this file,
/// or in an earlier file with other values, or the same PSP object under
/// another balance transaction id. An identical line from an earlier file is
/// not a decision at all: the caller skips it (see [`already_imported`]).
fn repeated_line(tx: &Tx, stored: &StoredRow) -> anyhow::Result<Option<Decision>> {
    let row = &stored.row;
    if let Some(first) = store::first_classified_row(tx, &row.balance_transaction_id, stored.id)? {
        let rule = if first.file_id == stored.file_id {
            "balance_transaction_id.repeated_in_file"
        } else {
            "balance_transaction_id.seen_with_other_values"
        };
        return Ok(Some(Decision::duplicate(rule, first.item_id, None)));
    }
    let Some(source_id) = &row.source_id else { return Ok(None) };
    let earlier: Option<i64> = tx.query_opt(
        "SELECT i.id FROM settlement_rows r JOIN reconciliation_items i ON i.row_id = r.id
         WHERE r.reporting_category = $1 AND r.source_id = $2 AND r.id < $3
           AND r.balance_transaction_id <> $4 AND i.class <> 'duplicate_in_file'
         ORDER BY r.id LIMIT 1",
        params![row.reporting_category, source_id, stored.id, row.balance_transaction_id],
        |r| r.get(0),
    )?;
    Ok(earlier.map(|item| Decision::duplicate("source_id.repeated", item, None)))
}

/// Is this line, identical, already classified from an earlier file?
pub fn already_imported(tx: &Tx, stored: &StoredRow) -> anyhow::Result<bool> {
    let Some(first) = store::first_classified_row(tx, &stored.row.balance_transaction_id, stored.id)? else {
        return Ok(false);
    };
    Ok(first.file_id != stored.file_id && same_movement(&first.row, &stored.row))
}

fn same_movement(a: &SettlementRow, b: &SettlementRow) -> bool {
    SettlementRow { line: 0, ..a.clone() } == SettlementRow { line: 0, ..b.clone() }
}

/// The record may be claimed by one line only; a second line for it is a duplicate.
fn claim_or_duplicate(tx: &Tx, decision: Decision, item_id: Option<i64>) -> anyhow::Result<Decision> {
    let Some(record) = decision.record.as_ref().filter(|_| decision.class.claims_record()) else {
        return Ok(decision);
    };
    match store::claimed_by(tx, record.kind, &record.id)? {
        Some(other) if Some(other) != item_id => {
            Ok(Decision::duplicate("record.already_matched", other, decision.record.clone()))
        }
        Some(_) | None => Ok(decision),
    }
}

/// Payout and fee lines are the PSP's own movements: till books them from the file.
fn booked_from_file(row: &SettlementRow, kind: RecordKind, rule: &str) -> Decision {
    let id = row.source_id.clone().unwrap_or_else(|| row.balance_transaction_id.clone());
    let record = TillRecord {
        kind,
        id,
        amount_minor: -row.net_minor,
        currency: row.currency.code().to_string(),
        status: "booked".into(),
    };
    Decision::new(Class::Matched, rule, Some(record))
}

/// A charge: by the order id in its metadata (token payments), by the
/// payment intent till stored, or by the checkout id in its metadata
/// (hosted checkouts, whose intent till learns only when it hears of the payment).
fn match_charge(tx: &Tx, row: &SettlementRow) -> anyhow::Result<Decision> {
    let mut keyed = false;
    if let Some(order_id) = &row.payment_order_id {
        keyed = true;
        if let Some(record) = order_record(tx, OrderKey::Id, order_id)? {
            return Ok(compare(row, record, 1, "charge.metadata_payment_order_id"));
        }
    }
    if let Some(intent) = &row.payment_intent_id {
        keyed = true;
        if let Some(record) = order_record(tx, OrderKey::PaymentIntent, intent)? {
            return Ok(compare(row, record, 1, "charge.payment_intent_id"));
        }
    }
    if let Some(checkout_id) = &row.checkout_id {
        keyed = true;
        if let Some(record) = checkout_record(tx, checkout_id)? {
            return Ok(compare(row, record, 1, "charge.metadata_checkout_id"));
        }
    }
    Ok(if keyed {
        Decision::new(Class::MissingInTill, "charge.unknown_to_till", None)
    } else {
        Decision::new(Class::Unclassified, "charge.no_keys", None)
    })
}

/// How a charge line names an order.
#[derive(Clone, Copy)]
enum OrderKey {
    Id,
    PaymentIntent,
}

/// The record an order stands for: the order itself for a token payment,
/// its whole checkout for a hosted page (one charge for all its orders).
fn order_record(tx: &Tx, by: OrderKey, key: &str) -> anyhow::Result<Option<TillRecord>> {
    let found = match by {
        OrderKey::Id => payments::store::order_and_method(tx, key)?,
        OrderKey::PaymentIntent => payments::store::order_and_method_by_intent(tx, key)?,
    };
    let Some(OrderAndMethod { order, hosted_page }) = found else { return Ok(None) };
    if hosted_page {
        return checkout_record(tx, order.checkout_id.as_str());
    }
    Ok(Some(TillRecord {
        kind: RecordKind::PaymentOrder,
        id: order.payment_order_id.to_string(),
        amount_minor: order.charged_minor(),
        currency: order.amount.currency().code().to_string(),
        status: order.status.as_str().into(),
    }))
}

/// A checkout as one record: the sum of its orders, and its orders' common status.
fn checkout_record(tx: &Tx, checkout_id: &str) -> anyhow::Result<Option<TillRecord>> {
    let Some(total) = payments::store::checkout_total(tx, checkout_id)? else { return Ok(None) };
    // A token checkout is several charges: its checkout id alone names none of them.
    if !total.hosted_page {
        return Ok(None);
    }
    // One charge for all its orders: paid when some succeeded and the rest
    // were released by a manual capture; then it charged what they captured.
    let (status, amount_minor) = if total.succeeded > 0 && total.succeeded + total.failed == total.orders {
        ("SUCCESS", total.captured_minor)
    } else if total.failed > 0 {
        ("FAILED", total.amount_minor)
    } else {
        ("EXECUTING", total.amount_minor)
    };
    Ok(Some(TillRecord {
        kind: RecordKind::Checkout,
        id: checkout_id.to_string(),
        amount_minor,
        currency: total.currency,
        status: status.into(),
    }))
}

fn match_refund(tx: &Tx, row: &SettlementRow) -> anyhow::Result<Decision> {
    let Some(refund_id) = &row.source_id else {
        return Ok(Decision::new(Class::Unclassified, "refund.no_keys", None));
    };
    let record = refunds::store::row_by_psp_id(tx, refund_id)?.map(|r| TillRecord {
        kind: RecordKind::Refund,
        id: r.refund_id,
        amount_minor: r.amount_minor,
        currency: r.currency,
        status: r.status.as_str().into(),
    });
    Ok(match record {
        Some(record) => compare(row, record, -1, "refund.psp_refund_id"),
        None => Decision::new(Class::MissingInTill, "refund.unknown_to_till", None),
    })
}

fn match_transfer(tx: &Tx, row: &SettlementRow) -> anyhow::Result<Decision> {
    let Some(transfer_id) = &row.source_id else {
        return Ok(Decision::new(Class::Unclassified, "transfer.no_keys", None));
    };
    let record = payouts::store::row_by_transfer(tx, transfer_id)?.map(|p| TillRecord {
        kind: RecordKind::Payout,
        id: p.payout_id,
        amount_minor: p.amount_minor,
        currency: p.currency,
        status: p.status.as_str().into(),
    });
    Ok(match record {
        Some(record) => compare(row, record, -1, "transfer.psp_transfer_id"),
        None => Decision::new(Class::MissingInTill, "transfer.unknown_to_till", None),
    })
}

/// A dispute's withdrawal (money out: the disputed amount, and the fee in
/// the fee column) or its reinstatement (money in), by the PSP's dispute
/// id; till booked it from the PSP's event, so the line books nothing:
/// it is matched when till has it booked with the same amount and fee.
fn match_dispute(tx: &Tx, row: &SettlementRow, kind: RecordKind) -> anyhow::Result<Decision> {
    let Some(psp_dispute_id) = &row.source_id else {
        return Ok(Decision::new(Class::Unclassified, format!("{}.no_keys", kind.as_str()), None));
    };
    let Some(total) = disputes::store::total_of_psp(tx, psp_dispute_id)? else {
        return Ok(Decision::new(Class::MissingInTill, format!("{}.unknown_to_till", kind.as_str()), None));
    };
    let (direction, booked) = match kind {
        RecordKind::DisputeReversal => (1, total.reinstated),
        _ => (-1, total.withdrawn),
    };
    let record = TillRecord {
        kind,
        id: psp_dispute_id.clone(),
        amount_minor: total.amount_minor,
        currency: total.currency.clone(),
        status: if booked { "booked".into() } else { total.status.as_str().into() },
    };
    let rule = format!("{}.psp_dispute_id", kind.as_str());
    if kind == RecordKind::Dispute && booked && row.fee_minor != total.fee_minor {
        return Ok(Decision::new(Class::AmountMismatch, format!("{rule}/fee_differs"), Some(record)));
    }
    Ok(compare(row, record, direction, &rule))
}

/// Currency first, then amount, then whether till has the movement as done.
/// `direction` is the sign the record's (positive) amount has in the file:
/// +1 for money in (a charge), −1 for money out (a refund, a transfer).
fn compare(row: &SettlementRow, record: TillRecord, direction: i64, key: &str) -> Decision {
    let expected_gross = record.amount_minor.checked_mul(direction);
    let (class, check) = if !record.currency.eq_ignore_ascii_case(row.currency.code()) {
        (Class::CurrencyMismatch, "currency_differs")
    } else if expected_gross != Some(row.gross_minor) {
        (Class::AmountMismatch, "amount_differs")
    } else {
        match done_in_till(record.kind, &record.status) {
            Done::Yes => (Class::Matched, "same_amount"),
            Done::NotYet => (Class::MissingInTill, "not_final_in_till"),
            Done::Failed => (Class::MissingInTill, "failed_in_till"),
        }
    };
    Decision::new(class, format!("{key}/{check}"), Some(record))
}

enum Done {
    Yes,
    NotYet,
    Failed,
}

/// Has till booked the movement the PSP reports?
fn done_in_till(kind: RecordKind, status: &str) -> Done {
    match (kind, status) {
        (RecordKind::Checkout | RecordKind::PaymentOrder, "SUCCESS")
        | (RecordKind::Refund, "SUCCEEDED")
        | (RecordKind::Payout, "PAID")
        | (RecordKind::Dispute | RecordKind::DisputeReversal, "booked")
        | (RecordKind::BankPayout | RecordKind::PspFee, _) => Done::Yes,
        (_, "FAILED") => Done::Failed,
        _ => Done::NotYet,
    }
}
