//! The staff dashboard's own domain: staff users and their sessions, login
//! rate limiting, the audit trail of dashboard actions (which also makes
//! each action idempotent), and the read models of its pages. The routes
//! live in `http::admin`; money moves only through the core functions
//! (`refunds::create`, `payouts::create`, `queue::retry_dead`, …).

pub mod actions;
pub mod format;
pub mod rate_limit;
pub mod sessions;
pub mod users;
pub mod views;
