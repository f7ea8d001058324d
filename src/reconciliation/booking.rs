//! What the file books by itself. till books a charge's full gross to
//! `assets:psp_balance` at pay-in; the PSP keeps its fee and later pays the
//! rest out to the bank. Booking the fee (`expenses:psp_fees`) and the
//! payout (`assets:bank`) against `assets:psp_balance` makes that account
//! equal the PSP's balance. Each posting's source id is the balance
//! transaction id, so a line is never booked twice.

use super::model::{Decision, RecordKind};
use super::parse::SettlementRow;
use crate::db::Tx;
use crate::ledger::{self, Posting};

/// What a line booked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Booked {
    pub fees: i64,
    pub payouts: i64,
}

/// Books what a decided line calls for (see [`line_posting`]).
pub fn book_line(tx: &Tx, row: &SettlementRow, decision: &Decision) -> anyhow::Result<Booked> {
    let postings: Vec<_> = line_posting(row, decision).into_iter().collect();
    book(tx, &postings)
}

/// Books the postings of many lines in one ledger call; a line booked
/// before books nothing again.
pub fn book(tx: &Tx, postings: &[(Posting<'_>, Booked)]) -> anyhow::Result<Booked> {
    let ledger_postings: Vec<&Posting> = postings.iter().map(|(p, _)| p).collect();
    let ids = ledger::post_transactions(tx, &ledger_postings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut booked = Booked::default();
    for ((_, what), id) in postings.iter().zip(ids) {
        if id.is_some() {
            booked.fees += what.fees;
            booked.payouts += what.payouts;
        }
    }
    Ok(booked)
}

/// What a decided line calls for: the fee of a line tied to a till record,
/// a fee line, or a payout to the bank, with what it counts as. Lines nobody
/// recognises (duplicates, unclassified, unknown to till) book nothing until
/// a person looks.
pub fn line_posting<'a>(row: &'a SettlementRow, decision: &Decision) -> Option<(Posting<'a>, Booked)> {
    let record = decision.record.as_ref().filter(|_| decision.class.claims_record())?;
    let (source_type, account, amount_minor, what, counts) = match record.kind {
        // A payout moves −net (positive) from the PSP to the bank.
        RecordKind::BankPayout => {
            ("settlement_payout", ledger::BANK, -row.net_minor, "payout to the bank", Booked { fees: 0, payouts: 1 })
        }
        // A fee line: the whole movement is the PSP's charge.
        RecordKind::PspFee => {
            ("settlement_fee", ledger::PSP_FEES, -row.net_minor, "PSP fee", Booked { fees: 1, payouts: 0 })
        }
        // The fee on a charge (or one returned on a refund: negative).
        RecordKind::Checkout | RecordKind::PaymentOrder | RecordKind::Refund | RecordKind::Payout => {
            ("settlement_fee", ledger::PSP_FEES, row.fee_minor, "PSP fee on", Booked { fees: 1, payouts: 0 })
        }
        // A dispute's amount and fee were booked from the PSP's own copy of it.
        RecordKind::Dispute | RecordKind::DisputeReversal => return None,
    };
    if amount_minor == 0 {
        return None;
    }
    let description = match record.kind {
        RecordKind::BankPayout | RecordKind::PspFee => format!("{what} {}", row.balance_transaction_id),
        _ => format!("{what} {} {} ({})", record.kind.as_str(), record.id, row.balance_transaction_id),
    };
    let posting = Posting {
        source_type,
        source_id: &row.balance_transaction_id,
        currency: row.currency,
        description,
        entries: vec![(account.to_string(), amount_minor), (ledger::PSP_BALANCE.to_string(), -amount_minor)],
    };
    Some((posting, counts))
}
