//! The payment domain's types: ids that parse, the order state machine, the
//! order as read from its row, and the validated request to create a checkout.

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

/// The seed design's payment order states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    NotStarted,
    Executing,
    Success,
    Failed,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 4] =
        [OrderStatus::NotStarted, OrderStatus::Executing, OrderStatus::Success, OrderStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::NotStarted => "NOT_STARTED",
            OrderStatus::Executing => "EXECUTING",
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
            OrderStatus::NotStarted | OrderStatus::Executing => false,
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
            (OrderStatus::NotStarted, OrderStatus::NotStarted | OrderStatus::Success)
            | (OrderStatus::Executing, OrderStatus::NotStarted | OrderStatus::Executing)
            | (OrderStatus::Success | OrderStatus::Failed, _) => false,
        }
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
}

/// A payment event (checkout) with its orders, as its rows hold them.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkout {
    pub checkout_id: CheckoutId,
    pub is_payment_done: bool,
    /// `hosted_page` or `token`.
    pub payment_method: String,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewOrder {
    pub payment_order_id: PaymentOrderId,
    pub seller_id: SellerId,
    #[serde(serialize_with = "serialize_money")]
    pub amount: Money,
}

/// A create-payment request that has passed every check: once built, valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCheckout {
    pub checkout_id: CheckoutId,
    pub buyer: Buyer,
    pub orders: Vec<NewOrder>,
    pub payment_method: PaymentMethod,
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
