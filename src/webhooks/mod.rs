//! Webhooks: events coming in from the PSP (`psp_in`) and going out to the
//! shop (`out`).

pub mod out;
pub mod psp_in;
