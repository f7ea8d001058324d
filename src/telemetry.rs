//! Structured logs through `tracing`: text for people, JSON for machines.
//! `RUST_LOG` overrides `log.level`.

use tracing_subscriber::EnvFilter;

use crate::config::LogSettings;

pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // try_init: tests may have installed a subscriber already.
    let _ = if settings.format == "json" { builder.json().try_init() } else { builder.try_init() };
}
