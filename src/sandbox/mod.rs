//! The sandbox PSP: a simulator of a subset of Stripe's API with its own
//! state and database. It is an independent party: till talks to it only over
//! HTTP, exactly as it talks to Stripe.
