//! Webhooks: events coming in from the PSP (`psp_in`).

pub mod psp_in;
