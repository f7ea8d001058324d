//! The PSP connector: one client for Stripe's protocol, used for the
//! embedded sandbox and, by configuration, for Stripe itself. One method per
//! flow; the wire translation lives in `types` and `form`.
//!
//! There is no connector trait: till speaks one protocol, and the sandbox is
//! reached over HTTP exactly as Stripe is, so tests exercise the real client.

pub mod client;
pub mod requests;
pub mod types;
pub mod webhook_signature;

pub use client::{
    CancelIntentRequest, CaptureRequest, CheckoutSessionRequest, DisputeResponse, DisputeResponseRequest, LineItem,
    PaymentIntentRequest, PspClient, PspError, RefundRequest, ReportRunRequest, TransferRequest, session_key,
};
pub use requests::PspRequest;
