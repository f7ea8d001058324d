//! Reconciliation's vocabulary: the classes of SPEC §7, the kinds of till
//! records a settlement line can match, and where a file came from.

use std::fmt;

use serde::Serialize;

/// What a settlement line (or a till record no line mentions) turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Matched,
    AmountMismatch,
    CurrencyMismatch,
    /// The PSP has it, till does not (yet): a lost webhook, fixed by asking the PSP.
    MissingInTill,
    /// Till has it, no file does, after `reconciliation.grace_days`.
    MissingInPsp,
    DuplicateInFile,
    Unclassified,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::Matched,
        Class::AmountMismatch,
        Class::CurrencyMismatch,
        Class::MissingInTill,
        Class::MissingInPsp,
        Class::DuplicateInFile,
        Class::Unclassified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Matched => "matched",
            Class::AmountMismatch => "amount_mismatch",
            Class::CurrencyMismatch => "currency_mismatch",
            Class::MissingInTill => "missing_in_till",
            Class::MissingInPsp => "missing_in_psp",
            Class::DuplicateInFile => "duplicate_in_file",
            Class::Unclassified => "unclassified",
        }
    }

    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Does a person have to look at it? Written without a `_` arm so a new
    /// class must be placed on purpose.
    pub fn needs_person(self) -> bool {
        match self {
            Class::Matched => false,
            Class::AmountMismatch
            | Class::CurrencyMismatch
            | Class::MissingInTill
            | Class::MissingInPsp
            | Class::DuplicateInFile
            | Class::Unclassified => true,
        }
    }

    /// Does a line of this class claim its till record (so that no other
    /// line can match it)? The database enforces it with a unique index.
    pub fn claims_record(self) -> bool {
        match self {
            Class::Matched | Class::AmountMismatch | Class::CurrencyMismatch | Class::MissingInTill => true,
            Class::MissingInPsp | Class::DuplicateInFile | Class::Unclassified => false,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The till record a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A hosted checkout: one PSP charge for all its orders.
    Checkout,
    /// A token order: one PSP charge each.
    PaymentOrder,
    Refund,
    /// A seller pay-out (a transfer at the PSP).
    Payout,
    /// The PSP's payout of our balance to our bank, booked from the file.
    BankPayout,
    /// A fee the PSP charged on its own line, booked from the file.
    PspFee,
    /// A dispute's withdrawal (by the PSP's dispute id), booked from its event.
    Dispute,
    /// A won dispute's reinstatement, booked from its event.
    DisputeReversal,
}

impl RecordKind {
    pub const ALL: [RecordKind; 8] = [
        RecordKind::Checkout,
        RecordKind::PaymentOrder,
        RecordKind::Refund,
        RecordKind::Payout,
        RecordKind::BankPayout,
        RecordKind::PspFee,
        RecordKind::Dispute,
        RecordKind::DisputeReversal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Checkout => "checkout",
            RecordKind::PaymentOrder => "payment_order",
            RecordKind::Refund => "refund",
            RecordKind::Payout => "payout",
            RecordKind::BankPayout => "bank_payout",
            RecordKind::PspFee => "psp_fee",
            RecordKind::Dispute => "dispute",
            RecordKind::DisputeReversal => "dispute_reversal",
        }
    }

    pub fn parse(s: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a settlement file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cli,
    Upload,
    Scheduled,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cli => "cli",
            Source::Upload => "upload",
            Source::Scheduled => "scheduled",
        }
    }
}

// Classes and record kinds are stored as their names.
crate::sql_as_text!(Class, |c: &Class| c.as_str(), Class::parse);
crate::sql_as_text!(RecordKind, |k: &RecordKind| k.as_str(), RecordKind::parse);

/// Till's side of a decision: the record and what till holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TillRecord {
    pub kind: RecordKind,
    pub id: String,
    /// Positive: what the record moved (a charge's total, a refund's amount, …).
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
}

/// One decision, with the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub class: Class,
    /// `<how the record was found>/<what the comparison said>`, e.g.
    /// `charge.payment_intent_id/same_amount`.
    pub rule: String,
    pub record: Option<TillRecord>,
    /// The item this line repeats, for `duplicate_in_file`.
    pub duplicate_of: Option<i64>,
}

impl Decision {
    pub fn new(class: Class, rule: impl Into<String>, record: Option<TillRecord>) -> Decision {
        Decision { class, rule: rule.into(), record, duplicate_of: None }
    }

    pub fn duplicate(rule: &str, of_item: i64, record: Option<TillRecord>) -> Decision {
        Decision { class: Class::DuplicateInFile, rule: rule.to_string(), record, duplicate_of: Some(of_item) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Class::ALL {
            assert_eq!(Class::parse(c.as_str()), Some(c));
        }
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Class::parse("nope"), None);
    }

    #[test]
    fn only_a_match_needs_nobody() {
        let quiet: Vec<Class> = Class::ALL.into_iter().filter(|c| !c.needs_person()).collect();
        assert_eq!(quiet, vec![Class::Matched]);
    }
}
