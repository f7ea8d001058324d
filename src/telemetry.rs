//! Structured logs through `tracing`: text for people (coloured only on a
//! terminal), JSON for machines. `RUST_LOG` overrides `log.level`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogSettings;

/// Libraries whose INFO lines are noise for an operator (each worker's
/// start, the scheduler's own bookkeeping, migrations, which till reports
/// itself); quietened unless `log.level` names them.
const QUIET: [&str; 3] = ["actix_server", "tokio_cron_scheduler", "rusqlite_migration"];

/// Logs of `till serve`: `log.level`.
pub fn init(settings: &LogSettings) {
    init_at(&settings.level, &settings.format);
}

/// Logs of a one-off command: its result goes to stdout, and only
/// warnings and errors to stderr, unless `verbose` (`-v`) asks for `log.level`.
pub fn init_for_command(settings: &LogSettings, verbose: bool) {
    init_at(if verbose { &settings.level } else { "warn" }, &settings.format);
}

fn init_at(level: &str, format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // try_init: tests may have installed a subscriber already.
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}

fn directives(level: &str) -> String {
    let mut out = level.to_string();
    for target in QUIET.iter().filter(|t| !level.contains(*t)) {
        out.push_str(&format!(",{target}=warn"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn noisy_libraries_are_quiet_unless_named() {
        assert_eq!(
            super::directives("info"),
            "info,actix_server=warn,tokio_cron_scheduler=warn,rusqlite_migration=warn"
        );
        assert!(super::directives("info,actix_server=debug").ends_with("rusqlite_migration=warn"));
        assert!(!super::directives("info,actix_server=debug").contains("actix_server=warn"));
    }
}
