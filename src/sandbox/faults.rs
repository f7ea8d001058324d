//! Injected faults, for tests and demos: latency, 500s, requests that do the
//! work and then hang (the unknown-outcome case), and dropped, duplicated and
//! delayed webhooks. Changeable at run time (`POST /v1/sandbox/faults`). All
//! random draws come from one RNG behind a mutex: a non-zero `seed` makes
//! them reproducible for a given sequence of requests (seed 0: from entropy).

use std::sync::{Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use super::error::StripeError;
use crate::config::FaultSettings;

/// Bounds, as `config.rs` validates them at start.
pub const MAX_LATENCY_MS: u64 = 60_000;
pub const MAX_WEBHOOK_DELAY_MS: u64 = 600_000;

pub struct Faults {
    current: Mutex<FaultSettings>,
    rng: Mutex<StdRng>,
}

/// What this API request suffers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestFaults {
    pub latency_ms: u64,
    /// Answer 500 before doing the work.
    pub error: bool,
    /// Do the work, then hang.
    pub timeout: bool,
}

/// What happens to one event's delivery to one endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliveryFaults {
    /// 0 = dropped, 1 = normal, 2 = duplicated.
    pub copies: u8,
    pub delay_ms: u64,
}

/// A change to the faults: only the keys given change.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPatch {
    pub latency_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub timeout_rate: Option<f64>,
    pub webhook_drop_rate: Option<f64>,
    pub webhook_duplicate_rate: Option<f64>,
    pub webhook_delay_ms: Option<u64>,
    pub seed: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent
    // (plain values), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn seeded(seed: u64) -> StdRng {
    if seed == 0 { StdRng::from_os_rng() } else { StdRng::seed_from_u64(seed) }
}

/// `true` with probability `rate`; draws only when the outcome is uncertain,
/// so unset faults do not consume the seeded sequence.
fn chance(rng: &mut StdRng, rate: f64) -> bool {
    if rate <= 0.0 {
        false
    } else if rate >= 1.0 {
        true
    } else {
        rng.random::<f64>() < rate
    }
}

impl Faults {
    pub fn new(settings: &FaultSettings) -> Faults {
        Faults { current: Mutex::new(settings.clone()), rng: Mutex::new(seeded(settings.seed)) }
    }

    pub fn snapshot(&self) -> FaultSettings {
        lock(&self.current).clone()
    }

    /// Applies a validated patch; a new `seed` restarts the sequence.
    pub fn apply(&self, patch: FaultPatch) -> Result<FaultSettings, StripeError> {
        let mut next = self.snapshot();
        next.latency_ms = patch.latency_ms.unwrap_or(next.latency_ms);
        next.error_rate = patch.error_rate.unwrap_or(next.error_rate);
        next.timeout_rate = patch.timeout_rate.unwrap_or(next.timeout_rate);
        next.webhook_drop_rate = patch.webhook_drop_rate.unwrap_or(next.webhook_drop_rate);
        next.webhook_duplicate_rate = patch.webhook_duplicate_rate.unwrap_or(next.webhook_duplicate_rate);
        next.webhook_delay_ms = patch.webhook_delay_ms.unwrap_or(next.webhook_delay_ms);
        next.seed = patch.seed.unwrap_or(next.seed);
        validate(&next)?;
        if let Some(seed) = patch.seed {
            *lock(&self.rng) = seeded(seed);
        }
        *lock(&self.current) = next.clone();
        Ok(next)
    }

    pub fn draw_request(&self) -> RequestFaults {
        let f = self.snapshot();
        let mut rng = lock(&self.rng);
        let error = chance(&mut rng, f.error_rate);
        // A request that fails up front cannot also time out after the work.
        let timeout = !error && chance(&mut rng, f.timeout_rate);
        RequestFaults { latency_ms: f.latency_ms, error, timeout }
    }

    pub fn draw_delivery(&self) -> DeliveryFaults {
        let f = self.snapshot();
        let mut rng = lock(&self.rng);
        let copies = if chance(&mut rng, f.webhook_drop_rate) {
            0
        } else if chance(&mut rng, f.webhook_duplicate_rate) {
            2
        } else {
            1
        };
        let delay_ms = if f.webhook_delay_ms == 0 { 0 } else { rng.random_range(0..=f.webhook_delay_ms) };
        DeliveryFaults { copies, delay_ms }
    }
}

fn validate(f: &FaultSettings) -> Result<(), StripeError> {
    for (name, rate) in [
        ("error_rate", f.error_rate),
        ("timeout_rate", f.timeout_rate),
        ("webhook_drop_rate", f.webhook_drop_rate),
        ("webhook_duplicate_rate", f.webhook_duplicate_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(StripeError::invalid(
                "parameter_invalid",
                name,
                format!("{name} must be between 0.0 and 1.0."),
            ));
        }
    }
    if f.latency_ms > MAX_LATENCY_MS {
        return Err(StripeError::invalid(
            "parameter_invalid",
            "latency_ms",
            format!("latency_ms must be at most {MAX_LATENCY_MS}."),
        ));
    }
    if f.webhook_delay_ms > MAX_WEBHOOK_DELAY_MS {
        return Err(StripeError::invalid(
            "parameter_invalid",
            "webhook_delay_ms",
            format!("webhook_delay_ms must be at most {MAX_WEBHOOK_DELAY_MS}."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(rate: f64, seed: u64) -> Faults {
        Faults::new(&FaultSettings {
            error_rate: rate,
            webhook_drop_rate: rate,
            webhook_delay_ms: 100,
            seed,
            ..FaultSettings::default()
        })
    }

    #[test]
    fn a_seed_reproduces_the_draws() {
        let draws = |f: &Faults| (0..50).map(|_| (f.draw_request(), f.draw_delivery())).collect::<Vec<_>>();
        assert_eq!(draws(&faults(0.5, 7)), draws(&faults(0.5, 7)));
        assert_ne!(draws(&faults(0.5, 7)), draws(&faults(0.5, 8)));
    }

    #[test]
    fn zero_and_one_are_certain() {
        assert!(!faults(0.0, 1).draw_request().error);
        assert!(faults(1.0, 1).draw_request().error);
        assert_eq!(faults(1.0, 1).draw_delivery().copies, 0);
    }

    #[test]
    fn patches_are_validated_and_partial() {
        let f = faults(0.0, 1);
        assert!(f.apply(FaultPatch { error_rate: Some(1.5), ..Default::default() }).is_err());
        assert!(f.apply(FaultPatch { error_rate: Some(f64::NAN), ..Default::default() }).is_err());
        let now = f.apply(FaultPatch { latency_ms: Some(5), ..Default::default() }).unwrap();
        assert_eq!((now.latency_ms, now.webhook_delay_ms, now.seed), (5, 100, 1));
    }
}
