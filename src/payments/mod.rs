//! Pay-in: payment events (checkouts) and their orders, from the create call
//! through the PSP to a final state, with the wallet and ledger moved in the
//! same transaction as the order's success.

pub mod complete;
pub mod create;
pub mod execute;
pub mod model;
pub mod store;
