//! Webhooks: events coming in from the PSP (`psp_in`) and going out to the
//! shop (`out`), which may reach only public addresses (`url_policy`).

pub mod out;
pub mod psp_in;
pub mod url_policy;
