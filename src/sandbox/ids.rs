//! Identifiers shaped like Stripe's (`cs_test_…`, `pi_…`, `evt_…`) and the
//! clock, in the units Stripe's API uses.

use rand::Rng;
use rand::distr::Alphanumeric;

/// Random characters after the prefix: Stripe's ids carry about 24.
const ID_RANDOM_CHARS: usize = 24;

/// `prefix` followed by random letters and digits: `new_id("pi_")`.
pub fn new_id(prefix: &str) -> String {
    with_random(prefix, ID_RANDOM_CHARS)
}

/// `prefix` followed by `n` random letters and digits.
pub fn with_random(prefix: &str, n: usize) -> String {
    let mut rng = rand::rng();
    let tail: String = (0..n).map(|_| char::from(rng.sample(Alphanumeric))).collect();
    format!("{prefix}{tail}")
}

/// Unix seconds, as Stripe's objects write time.
pub fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Unix milliseconds, for the background tasks' schedules.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
