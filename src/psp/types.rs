//! Stripe's wire types, as far as till reads them. Unknown fields are
//! ignored: Stripe adds fields without notice.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: Option<String>,
    /// open | complete | expired
    pub status: Option<String>,
    /// unpaid | paid | no_payment_required
    pub payment_status: String,
    pub payment_intent: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub client_reference_id: Option<String>,
    /// Unix seconds; an open session expires then.
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

/// What the session says happened, in till's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutcome {
    Open,
    Paid,
    /// The buyer finished but the money is not captured: a manual capture's
    /// authorization (Stripe then says `complete` and `unpaid`), or a
    /// payment still on its way. Its payment intent says which.
    Completed,
    Expired,
}

impl CheckoutSession {
    pub fn outcome(&self) -> SessionOutcome {
        match (self.status.as_deref(), self.payment_status.as_str()) {
            (Some("complete"), "paid") => SessionOutcome::Paid,
            (Some("complete"), _) => SessionOutcome::Completed,
            (Some("expired"), _) => SessionOutcome::Expired,
            _ => SessionOutcome::Open,
        }
    }

    /// The checkout this session was made for (we set both fields).
    pub fn checkout_id(&self) -> Option<&str> {
        self.metadata.get("checkout_id").map(String::as_str).or(self.client_reference_id.as_deref())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct StripeErrorBody {
    pub error: StripeError,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StripeError {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub message: Option<String>,
    /// The parameter at fault, if one is.
    pub param: Option<String>,
}

/// An event as the PSP signs and sends it to `/webhooks/psp`.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

impl Event {
    /// The id of the object the event is about (`cs_…`, `pi_…`, …).
    pub fn object_id(&self) -> Option<&str> {
        self.data.object.get("id").and_then(|v| v.as_str())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    /// requires_payment_method | requires_confirmation | requires_action |
    /// processing | requires_capture | canceled | succeeded
    pub status: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    pub last_payment_error: Option<StripeError>,
    /// `automatic` | `automatic_async` | `manual`.
    pub capture_method: Option<String>,
    /// What a `requires_capture` intent holds for capture.
    #[serde(default)]
    pub amount_capturable: i64,
    /// What the PSP took: all of `amount`, or what a manual capture took.
    #[serde(default)]
    pub amount_received: i64,
    /// Why a `canceled` intent was canceled; `automatic`: its authorization expired.
    pub cancellation_reason: Option<String>,
}

/// What a payment intent says happened, in till's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentOutcome {
    /// Paid: the PSP received what it says (`amount_received`).
    Succeeded,
    /// Authorized for manual capture: the PSP holds the money.
    Authorized,
    /// Declined or canceled, with the reason as till's `failure_code`
    /// (`authorization_expired` for an authorization the PSP let expire).
    Failed(String),
    /// Not decided yet: ask again later.
    Pending,
}

impl PaymentIntent {
    /// What the PSP received: `amount_received` (an answer without it, from
    /// a PSP that predates it, received all of a succeeded intent's amount).
    pub fn received_minor(&self) -> i64 {
        match (self.status.as_str(), self.amount_received) {
            ("succeeded", 0) => self.amount,
            (_, received) => received,
        }
    }

    pub fn outcome(&self) -> IntentOutcome {
        match self.status.as_str() {
            "succeeded" => IntentOutcome::Succeeded,
            "requires_capture" => IntentOutcome::Authorized,
            "canceled" => match self.cancellation_reason.as_deref() {
                Some("automatic") => IntentOutcome::Failed("authorization_expired".into()),
                _ => IntentOutcome::Failed("canceled".into()),
            },
            "requires_payment_method" => match &self.last_payment_error {
                Some(e) => IntentOutcome::Failed(failure_code(e.code.as_deref(), e.decline_code.as_deref())),
                None => IntentOutcome::Pending,
            },
            _ => IntentOutcome::Pending,
        }
    }
}

/// A decline's most specific reason: `insufficient_funds` rather than
/// `card_declined`, but `card_declined` rather than Stripe's `generic_decline`.
pub fn failure_code(code: Option<&str>, decline_code: Option<&str>) -> String {
    match decline_code {
        Some(d) if d != "generic_decline" && !d.is_empty() => d.to_string(),
        _ => code.unwrap_or("card_declined").to_string(),
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    pub id: String,
    /// pending | requires_action | succeeded | failed | canceled
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub payment_intent: Option<String>,
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

/// A dispute (chargeback) of a charge, as the PSP keeps it.
#[derive(Debug, Clone, Deserialize)]
pub struct Dispute {
    pub id: String,
    /// What the cardholder disputes, in minor units.
    pub amount: i64,
    pub currency: String,
    pub charge: Option<String>,
    /// The PaymentIntent whose charge is disputed.
    pub payment_intent: Option<String>,
    pub reason: Option<String>,
    /// warning_needs_response | warning_under_review | warning_closed |
    /// needs_response | under_review | won | lost | prevented
    pub status: String,
    pub evidence_details: Option<EvidenceDetails>,
    /// The money the dispute moved: the withdrawal (amount and fee out),
    /// and, when won, the reinstatement.
    #[serde(default)]
    pub balance_transactions: Vec<BalanceTransaction>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EvidenceDetails {
    /// Unix seconds: evidence is due by then.
    pub due_by: Option<i64>,
    #[serde(default)]
    pub submission_count: i64,
}

/// One movement of the merchant's balance at the PSP.
#[derive(Debug, Clone, Deserialize)]
pub struct BalanceTransaction {
    pub id: String,
    /// Signed: money in is positive.
    pub amount: i64,
    #[serde(default)]
    pub fee: i64,
    pub net: i64,
    pub currency: String,
    pub reporting_category: Option<String>,
}

impl Dispute {
    /// The withdrawal: (amount, fee) taken out of the merchant's balance, if taken.
    pub fn withdrawal(&self) -> Option<(i64, i64)> {
        let taken = self.balance_transactions.iter().filter(|b| b.amount < 0);
        let (amount, fee) = taken.fold((0i64, 0i64), |(a, f), b| (a - b.amount, f + b.fee));
        (amount > 0).then_some((amount, fee))
    }

    /// What a reinstatement gave back (a won dispute), net of any fee.
    pub fn reinstatement(&self) -> Option<i64> {
        let back: i64 = self.balance_transactions.iter().filter(|b| b.amount > 0).map(|b| b.net).sum();
        (back > 0).then_some(back)
    }

    pub fn due_by(&self) -> Option<i64> {
        self.evidence_details.as_ref().and_then(|e| e.due_by)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Transfer {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub destination: String,
    #[serde(default)]
    pub reversed: bool,
    /// The sandbox's extension (pending | paid | failed); Stripe's transfers
    /// have none: they are done when created and fail only by reversal.
    pub status: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    Paid,
    Failed,
    InTransit,
}

impl Transfer {
    pub fn outcome(&self) -> TransferOutcome {
        match (self.reversed, self.status.as_deref()) {
            (true, _) | (false, Some("failed")) => TransferOutcome::Failed,
            (false, Some("paid") | None) => TransferOutcome::Paid,
            (false, Some(_)) => TransferOutcome::InTransit,
        }
    }
}

/// A run of one of Stripe's reports (`reporting.report_run`).
#[derive(Debug, Clone, Deserialize)]
pub struct ReportRun {
    pub id: String,
    /// pending | succeeded | failed
    pub status: String,
    /// Why it failed, when `status` is `failed`.
    pub error: Option<String>,
    /// The report, once `status` is `succeeded`.
    pub result: Option<File>,
}

/// A file at the PSP; its contents are downloaded by id.
#[derive(Debug, Clone, Deserialize)]
pub struct File {
    pub id: String,
    pub size: Option<i64>,
}

/// Where a report run stands, in till's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportRunOutcome {
    /// Not finished yet: ask again later.
    Pending,
    /// Its file, and the file's size in bytes when the PSP gave it.
    Succeeded { file_id: String, size: Option<i64> },
    /// It will never finish: the PSP's reason.
    Failed(String),
}

impl ReportRun {
    pub fn outcome(&self) -> ReportRunOutcome {
        match (self.status.as_str(), &self.result) {
            ("succeeded", Some(file)) => ReportRunOutcome::Succeeded { file_id: file.id.clone(), size: file.size },
            ("succeeded", None) => ReportRunOutcome::Failed("the run succeeded without a result file".into()),
            ("failed", _) => {
                ReportRunOutcome::Failed(self.error.clone().unwrap_or_else(|| "the PSP gave no reason".into()))
            }
            // `pending`, and any status Stripe may add: the run is not done.
            _ => ReportRunOutcome::Pending,
        }
    }
}
