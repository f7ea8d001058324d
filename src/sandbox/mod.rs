//! The sandbox PSP: a simulator of a subset of Stripe's API with its own
//! state and database. It is an independent party: till talks to it only over
//! HTTP, exactly as it talks to Stripe.

// TEMPORARY until the sandbox branch is merged.
pub fn build(
    _listener: std::net::TcpListener,
    _settings: &crate::config::SandboxSettings,
    _psp: &crate::config::PspSettings,
    _till_webhook_url: String,
) -> anyhow::Result<actix_web::dev::Server> {
    anyhow::bail!("the sandbox is not merged yet")
}
