//! The payment domain's types: ids that parse, the order state machine, the
//! order as read from its row, and the validated request to create a checkout.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::money::Money;

/// A client-generated UUID, kept in its canonical lower-case hyphenated form.
macro_rules! uuid_id {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Option<$name> {
                uuid::Uuid::parse_str(s).ok().map(|u| $name(u.hyphenated().to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// For ids read back from the database, which only stores parsed ones.
            pub fn from_stored(s: String) -> $name {
                $name(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

uuid_id!(CheckoutId);
uuid_id!(PaymentOrderId);

// Stored as their text; read back through `parse`, so a row holds only valid values.
crate::sql_as_text!(CheckoutId, CheckoutId::as_str, CheckoutId::parse);
crate::sql_as_text!(PaymentOrderId, PaymentOrderId::as_str, PaymentOrderId::parse);
crate::sql_as_text!(SellerId, SellerId::as_str, SellerId::parse);
crate::sql_as_text!(OrderStatus, |s: &OrderStatus| s.as_str(), OrderStatus::parse);
crate::sql_as_text!(CaptureMethod, |m: &CaptureMethod| m.as_str(), CaptureMethod::parse);
crate::sql_as_text!(CaptureDecision, |d: &CaptureDecision| d.as_str(), CaptureDecision::parse);

/// A seller's id: it names a ledger account (`liabilities:seller:{id}`), so
/// it is kept to a safe alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SellerId(String);

impl SellerId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Option<SellerId> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        ok.then(|| SellerId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_stored(s: String) -> SellerId {
        SellerId(s)
    }
}

impl fmt::Display for SellerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A payment order's states: the seed design's, and AUTHORIZED for a
/// checkout captured manually (the PSP holds the money; nothing is booked
/// until the shop captures it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    NotStarted,
    Executing,
    Authorized,
    Success,
    Failed,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::NotStarted,
        OrderStatus::Executing,
        OrderStatus::Authorized,
        OrderStatus::Success,
        OrderStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::NotStarted => "NOT_STARTED",
            OrderStatus::Executing => "EXECUTING",
            OrderStatus::Authorized => "AUTHORIZED",
            OrderStatus::Success => "SUCCESS",
            OrderStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    // Written without a `_` arm so a new state must be placed on purpose.
    pub fn is_final(self) -> bool {
        match self {
            OrderStatus::Success | OrderStatus::Failed => true,
            OrderStatus::NotStarted | OrderStatus::Executing | OrderStatus::Authorized => false,
        }
    }

    /// The one transition function of a payment order. An order never leaves a
    /// final state; everything else moves forward only.
    pub fn can_move_to(self, to: OrderStatus) -> bool {
        match (self, to) {
            (OrderStatus::NotStarted, OrderStatus::Executing) => true,
            // A PSP that refuses the request outright ends the order before it executes.
            (OrderStatus::NotStarted, OrderStatus::Failed) => true,
            (OrderStatus::Executing, OrderStatus::Success | OrderStatus::Failed) => true,
            // Manual capture: the PSP holds the money until the shop captures
            // it (SUCCESS), or voids it, or the authorization expires (FAILED).
            (OrderStatus::Executing, OrderStatus::Authorized) => true,
            (OrderStatus::Authorized, OrderStatus::Success | OrderStatus::Failed) => true,
            (OrderStatus::NotStarted, OrderStatus::NotStarted | OrderStatus::Authorized | OrderStatus::Success)
            | (OrderStatus::Executing, OrderStatus::NotStarted | OrderStatus::Executing)
            | (OrderStatus::Authorized, OrderStatus::NotStarted | OrderStatus::Executing | OrderStatus::Authorized)
            | (OrderStatus::Success | OrderStatus::Failed, _) => false,
        }
    }
}

/// How a checkout's payment is captured: at once when the buyer pays
/// (`automatic`), or when the shop says so (`manual`: authorize now,
/// capture later, Stripe's `capture_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMethod {
    Automatic,
    Manual,
}

impl CaptureMethod {
    pub const ALL: [CaptureMethod; 2] = [CaptureMethod::Automatic, CaptureMethod::Manual];

    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMethod::Automatic => "automatic",
            CaptureMethod::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<CaptureMethod> {
        CaptureMethod::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn is_automatic(&self) -> bool {
        *self == CaptureMethod::Automatic
    }
}

/// What was decided about a manual checkout's authorization, once: the
/// shop captures or voids it, or it expires uncaptured. The first decision
/// recorded stands (one guarded write), so a capture and a void never both happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureDecision {
    Capture,
    Void,
    Expire,
}

impl CaptureDecision {
    pub const ALL: [CaptureDecision; 3] = [CaptureDecision::Capture, CaptureDecision::Void, CaptureDecision::Expire];

    pub fn as_str(self) -> &'static str {
        match self {
            CaptureDecision::Capture => "capture",
            CaptureDecision::Void => "void",
            CaptureDecision::Expire => "expire",
        }
    }

    pub fn parse(s: &str) -> Option<CaptureDecision> {
        CaptureDecision::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payment order as its row holds it, typed once when it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub payment_order_id: PaymentOrderId,
    pub checkout_id: CheckoutId,
    pub seller_id: SellerId,
    pub amount: Money,
    pub status: OrderStatus,
    /// What refunds have taken of `amount`, in its currency's minor units.
    pub refunded_minor: i64,
    pub failure_code: Option<String>,
    /// The PSP's payment intent that charged (or tried to charge) the order.
    pub psp_payment_intent_id: Option<String>,
    pub wallet_updated: bool,
    pub ledger_updated: bool,
    pub created_at: String,
    pub updated_at: String,
    /// The shop's own words on the order, as given.
    pub description: Option<String>,
    pub metadata: Metadata,
    /// What was charged, once SUCCESS: `amount`, unless a manual capture took less.
    pub captured_minor: Option<i64>,
    /// Manual capture: when the PSP authorized it, and when the
    /// authorization must be captured by (else it expires).
    pub authorized_at: Option<String>,
    pub capture_before: Option<String>,
    /// Manual capture: what the shop's capture takes of it (0: released).
    pub capture_minor: Option<i64>,
}

#[cfg(test)]
impl Order {
    /// An order for unit tests: `amount_minor` of `currency` for `seller`,
    /// in `status` (paid in full when SUCCESS).
    pub fn for_tests(seller: &str, amount_minor: i64, currency: &str, status: OrderStatus) -> Order {
        let paid = status == OrderStatus::Success;
        Order {
            payment_order_id: PaymentOrderId::parse(&uuid::Uuid::new_v4().to_string()).expect("a UUID"),
            checkout_id: CheckoutId::from_stored("c".into()),
            seller_id: SellerId::parse(seller).expect("a seller id"),
            amount: Money::from_minor(amount_minor, crate::money::Currency::parse(currency).expect("a currency"))
                .expect("an amount"),
            status,
            refunded_minor: 0,
            failure_code: None,
            psp_payment_intent_id: None,
            wallet_updated: paid,
            ledger_updated: paid,
            created_at: String::new(),
            updated_at: String::new(),
            description: None,
            metadata: Metadata::default(),
            captured_minor: paid.then_some(amount_minor),
            authorized_at: None,
            capture_before: None,
            capture_minor: None,
        }
    }
}

impl Order {
    /// What the order is (or was) charged: what was captured once SUCCESS;
    /// before, what the shop's capture takes of it (manual capture), else
    /// its whole amount.
    pub fn charged_minor(&self) -> i64 {
        self.captured_minor.or(self.capture_minor).unwrap_or(self.amount.amount_minor())
    }
}

/// A payment event (checkout) with its orders, as its rows hold them.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkout {
    pub checkout_id: CheckoutId,
    pub is_payment_done: bool,
    /// The shop asked to cancel it.
    pub canceled: bool,
    pub description: Option<String>,
    pub metadata: Metadata,
    /// `hosted_page` or `token`.
    pub payment_method: String,
    pub capture_method: CaptureMethod,
    pub capture_decision: Option<CaptureDecision>,
    pub redirect_url: Option<String>,
    /// The buyer as the request gave it (`{"id", "email"}`).
    pub buyer: serde_json::Value,
    pub created_at: String,
    pub psp_session_id: Option<String>,
    /// In request order.
    pub orders: Vec<Order>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Buyer {
    pub id: String,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PaymentMethod {
    HostedPage { success_url: String, cancel_url: String },
    Token { token: String },
}

impl PaymentMethod {
    pub fn kind(&self) -> &'static str {
        match self {
            PaymentMethod::HostedPage { .. } => "hosted_page",
            PaymentMethod::Token { .. } => "token",
        }
    }
}

// Description and metadata are left out of the canonical form when not
// given, so a request made before they existed hashes as it did then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewOrder {
    pub payment_order_id: PaymentOrderId,
    pub seller_id: SellerId,
    #[serde(serialize_with = "serialize_money")]
    pub amount: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// A create-payment request that has passed every check: once built, valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCheckout {
    pub checkout_id: CheckoutId,
    pub buyer: Buyer,
    pub orders: Vec<NewOrder>,
    pub payment_method: PaymentMethod,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// Left out of the canonical form when automatic, as before it existed.
    #[serde(skip_serializing_if = "CaptureMethod::is_automatic")]
    pub capture_method: CaptureMethod,
}

/// What a shop writes about a checkout or an order (the buyer sees an
/// order's as its line on the hosted page): 1 to 500 characters, no
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(s: &str) -> Result<Description, String> {
        if s.trim().is_empty() {
            return Err("must not be empty (leave it out instead)".into());
        }
        if s.chars().any(char::is_control) {
            return Err("must not hold control characters".into());
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(format!("is longer than {} characters", Self::MAX_CHARS));
        }
        Ok(Description(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why metadata was refused: the key it is about (None: the whole map), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataError {
    pub key: Option<String>,
    pub why: String,
}

/// Key-value pairs a shop attaches to a checkout or an order, within
/// Stripe's limits (they are sent to the PSP): at most 50 keys of 1 to 40
/// characters (no square brackets: they would not survive Stripe's form
/// encoding), each with a string value of 1 to 500 characters. Till puts
/// its own keys ([`Metadata::RESERVED`]) on the PSP's objects, so a shop
/// may not use them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub const MAX_KEYS: usize = 50;
    pub const MAX_KEY_CHARS: usize = 40;
    pub const MAX_VALUE_CHARS: usize = 500;
    /// The keys till writes on the PSP's sessions and payment intents.
    pub const RESERVED: [&'static str; 3] = ["checkout_id", "payment_order_id", "seller_id"];
    /// What a PSP object may carry of the shop's keys, beside till's own
    /// (Stripe takes 50 keys in all).
    pub const MAX_KEYS_AT_PSP: usize = Self::MAX_KEYS - Self::RESERVED.len();

    /// Metadata from a JSON object whose values must be strings.
    pub fn parse(map: &serde_json::Map<String, serde_json::Value>) -> Result<Metadata, MetadataError> {
        let whole = |why: String| MetadataError { key: None, why };
        if map.len() > Self::MAX_KEYS {
            return Err(whole(format!("holds {} keys; at most {} are allowed", map.len(), Self::MAX_KEYS)));
        }
        let mut out = BTreeMap::new();
        for (key, value) in map {
            let refuse = |why: &str| MetadataError { key: Some(key.clone()), why: why.to_string() };
            let key_chars = key.chars().count();
            if key_chars == 0 || key_chars > Self::MAX_KEY_CHARS {
                return Err(refuse("keys must be 1 to 40 characters"));
            }
            if key.chars().any(|c| c.is_control() || c == '[' || c == ']') {
                return Err(refuse("keys must not hold control characters or square brackets"));
            }
            if Self::RESERVED.contains(&key.as_str()) {
                return Err(refuse("is a key till sets itself at the PSP (checkout_id, payment_order_id, seller_id)"));
            }
            let serde_json::Value::String(value) = value else {
                return Err(refuse("metadata values must be strings"));
            };
            let value_chars = value.chars().count();
            if value_chars == 0 || value_chars > Self::MAX_VALUE_CHARS {
                return Err(refuse("values must be 1 to 500 characters (leave an empty key out)"));
            }
            if value.contains('\0') {
                return Err(refuse("values must not hold NUL characters"));
            }
            out.insert(key.clone(), value.clone());
        }
        Ok(Metadata(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// These keys with `over`'s on top: an order's metadata over its checkout's.
    pub fn merged(&self, over: &Metadata) -> Metadata {
        let mut out = self.0.clone();
        out.extend(over.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        Metadata(out)
    }

    /// As stored: a JSON object, or NULL when empty.
    pub fn to_stored(&self) -> Option<String> {
        (!self.is_empty()).then(|| serde_json::to_string(&self.0).expect("a map of strings serializes"))
    }

    /// Read back from its column (written by [`Metadata::to_stored`]).
    pub fn from_stored(stored: Option<&str>) -> anyhow::Result<Metadata> {
        match stored {
            None => Ok(Metadata::default()),
            Some(text) => {
                Ok(Metadata(serde_json::from_str(text).map_err(|e| anyhow::anyhow!("stored metadata: {e}"))?))
            }
        }
    }
}

/// Where a checkout stands, from its orders' states: `open` while any
/// order is being paid (NOT_STARTED or EXECUTING); `authorized` when the
/// rest wait for the shop's capture (AUTHORIZED, beside any that FAILED);
/// then `succeeded` (every order SUCCESS), `failed` (every order FAILED),
/// `canceled` (every order FAILED after the shop canceled it) or
/// `partially_succeeded` (some of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutStatus {
    Open,
    Authorized,
    Succeeded,
    PartiallySucceeded,
    Failed,
    Canceled,
}

impl CheckoutStatus {
    pub fn of(orders: &[OrderStatus], canceled: bool) -> CheckoutStatus {
        let paying = |s: &OrderStatus| matches!(s, OrderStatus::NotStarted | OrderStatus::Executing);
        if orders.is_empty() || orders.iter().any(paying) {
            return CheckoutStatus::Open;
        }
        if orders.contains(&OrderStatus::Authorized) {
            return CheckoutStatus::Authorized;
        }
        let succeeded = orders.iter().filter(|s| **s == OrderStatus::Success).count();
        match (succeeded, canceled) {
            (0, true) => CheckoutStatus::Canceled,
            (0, false) => CheckoutStatus::Failed,
            (n, _) if n == orders.len() => CheckoutStatus::Succeeded,
            _ => CheckoutStatus::PartiallySucceeded,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckoutStatus::Open => "open",
            CheckoutStatus::Authorized => "authorized",
            CheckoutStatus::Succeeded => "succeeded",
            CheckoutStatus::PartiallySucceeded => "partially_succeeded",
            CheckoutStatus::Failed => "failed",
            CheckoutStatus::Canceled => "canceled",
        }
    }

    // Written without a `_` arm so a new state must be placed on purpose.
    pub fn is_final(self) -> bool {
        match self {
            CheckoutStatus::Open | CheckoutStatus::Authorized => false,
            CheckoutStatus::Succeeded
            | CheckoutStatus::PartiallySucceeded
            | CheckoutStatus::Failed
            | CheckoutStatus::Canceled => true,
        }
    }
}

impl Checkout {
    pub fn status(&self) -> CheckoutStatus {
        let states: Vec<OrderStatus> = self.orders.iter().map(|o| o.status).collect();
        CheckoutStatus::of(&states, self.canceled)
    }
}

fn serialize_money<S: serde::Serializer>(m: &Money, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}:{}", m.currency(), m.amount_minor()))
}

impl NewCheckout {
    /// SHA-256 of the canonical form: a retry with the same meaning has the
    /// same hash whatever its JSON spacing or key order.
    pub fn request_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::to_vec(self).expect("a NewCheckout always serializes");
        hex::encode(Sha256::digest(canonical))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_never_move() {
        for from in [OrderStatus::Success, OrderStatus::Failed] {
            for to in OrderStatus::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
        assert!(OrderStatus::NotStarted.can_move_to(OrderStatus::Executing));
        assert!(OrderStatus::Executing.can_move_to(OrderStatus::Success));
        assert!(!OrderStatus::NotStarted.can_move_to(OrderStatus::Success));
        assert!(!OrderStatus::Executing.can_move_to(OrderStatus::NotStarted));
    }

    #[test]
    fn an_authorized_order_is_captured_or_ends_failed_and_never_goes_back() {
        use OrderStatus::*;
        let legal = [
            (NotStarted, Executing),
            (NotStarted, Failed),
            (Executing, Authorized),
            (Executing, Success),
            (Executing, Failed),
            (Authorized, Success),
            (Authorized, Failed),
        ];
        for from in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(from.as_str()), Some(from));
            for to in OrderStatus::ALL {
                assert_eq!(from.can_move_to(to), legal.contains(&(from, to)), "{from} -> {to}");
            }
        }
        assert!(!Authorized.is_final(), "an authorization is not an outcome");
        assert_eq!(CaptureMethod::parse("manual"), Some(CaptureMethod::Manual));
        assert_eq!(CaptureMethod::parse("Manual"), None);
    }

    #[test]
    fn a_checkout_is_open_until_every_order_is_final_then_says_how_they_ended() {
        use CheckoutStatus::*;
        use OrderStatus::{Executing, Failed as F, NotStarted, Success as S};
        for (orders, canceled, expected) in [
            (&[S, Executing][..], false, Open),
            (&[NotStarted][..], true, Open),
            (&[S, S][..], false, Succeeded),
            (&[S, F][..], false, PartiallySucceeded),
            (&[F, S, S][..], false, PartiallySucceeded),
            (&[F, F][..], false, Failed),
            (&[F, F][..], true, Canceled),
            // A buyer who paid while the cancel was under way: paid it is.
            (&[S][..], true, Succeeded),
            (&[OrderStatus::Authorized, OrderStatus::Authorized][..], false, Authorized),
            (&[OrderStatus::Authorized, F][..], false, Authorized),
            (&[OrderStatus::Authorized, Executing][..], false, Open),
        ] {
            assert_eq!(CheckoutStatus::of(orders, canceled), expected, "{orders:?} canceled={canceled}");
            assert_eq!(expected.is_final(), !matches!(expected, Open | Authorized));
        }
    }

    #[test]
    fn metadata_keeps_to_stripes_limits_and_leaves_tills_keys_alone() {
        let parse = |v: serde_json::Value| Metadata::parse(v.as_object().unwrap());
        let ok = parse(serde_json::json!({"order_number": "1001", "note": "é".repeat(500)})).unwrap();
        assert_eq!(ok.get("order_number"), Some("1001"));
        assert_eq!(Metadata::from_stored(ok.to_stored().as_deref()).unwrap(), ok);
        assert_eq!(Metadata::from_stored(None).unwrap().to_stored(), None);
        let many: serde_json::Map<_, _> = (0..51).map(|i| (format!("k{i}"), serde_json::json!("v"))).collect();
        assert_eq!(Metadata::parse(&many).unwrap_err().key, None);
        for (bad, key) in [
            (serde_json::json!({"n": 1001}), "n"),
            (serde_json::json!({"n": null}), "n"),
            (serde_json::json!({"n": ""}), "n"),
            (serde_json::json!({"n": "x".repeat(501)}), "n"),
            (serde_json::json!({"a[b]": "x"}), "a[b]"),
            (serde_json::json!({"": "x"}), ""),
            (serde_json::json!({"checkout_id": "x"}), "checkout_id"),
        ] {
            assert_eq!(parse(bad.clone()).unwrap_err().key.as_deref(), Some(key), "{bad}");
        }
        let long_key = "k".repeat(41);
        assert!(parse(serde_json::json!({ long_key: "x" })).is_err());
        let merged = parse(serde_json::json!({"a": "1", "b": "1"}))
            .unwrap()
            .merged(&parse(serde_json::json!({"b": "2"})).unwrap());
        assert_eq!((merged.get("a"), merged.get("b")), (Some("1"), Some("2")), "the order's value wins");
        assert!(Description::parse("Blue mug, 350 ml").is_ok());
        for bad in ["", "  ", "a\nb", &"x".repeat(501)] {
            assert!(Description::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_canonical() {
        let id = CheckoutId::parse("1F0C7A0E-3A57-4B5B-9A4C-2B8E0F0F6D11").unwrap();
        assert_eq!(id.as_str(), "1f0c7a0e-3a57-4b5b-9a4c-2b8e0f0f6d11");
        assert!(CheckoutId::parse("not-a-uuid").is_none());
        assert!(SellerId::parse("seller_a").is_some());
        for bad in ["", "a b", "a:b", &"x".repeat(65)] {
            assert!(SellerId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
