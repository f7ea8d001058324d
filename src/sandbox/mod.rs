//! The sandbox PSP: a simulator of a subset of Stripe's API with its own
//! state and database. It is an independent party: till talks to it only over
//! HTTP, exactly as it talks to Stripe, and the official Stripe libraries work
//! against it.
//!
//! What it speaks (Stripe's wire formats: form-encoded bracket parameters in,
//! JSON out, Stripe's error shapes and status codes, `Idempotency-Key` kept
//! 24 h):
//! - `POST /v1/checkout/sessions` (with `payment_intent_data[capture_method]`),
//!   `GET /v1/checkout/sessions/{id}`, `POST /v1/checkout/sessions/{id}/expire`;
//!   the hosted page `/pay/{id}` with Stripe's test cards, the dispute card
//!   `4000000000000259` among them.
//! - `POST /v1/payment_intents` (`capture_method` `automatic`,
//!   `automatic_async` or `manual`), `GET /v1/payment_intents/{id}`,
//!   `POST /v1/payment_intents/{id}/confirm`, `…/capture`
//!   (`amount_to_capture`, `metadata[]`) and `…/cancel`
//!   (`cancellation_reason`), with the test payment methods `pm_card_visa`,
//!   `pm_card_mastercard`, `pm_card_chargeDeclined`,
//!   `pm_card_chargeDeclinedInsufficientFunds` and `pm_card_createDispute`.
//!   Events `payment_intent.succeeded`, `.payment_failed`,
//!   `.amount_capturable_updated` (authorized for manual capture) and
//!   `.canceled`.
//! - `GET /v1/disputes` (`payment_intent`, `charge`, `limit`,
//!   `starting_after`), `GET|POST /v1/disputes/{id}` (`evidence[uncategorized_text]`,
//!   `metadata[]`, `submit`), `POST /v1/disputes/{id}/close`; events
//!   `charge.dispute.created`, `.funds_withdrawn`, `.updated`,
//!   `.funds_reinstated`, `.closed`. The dispute card's charge is disputed
//!   (`fraudulent`) `[sandbox] dispute_after_ms` after it is captured, never
//!   while only authorized; evidence `winning_evidence` wins,
//!   `losing_evidence` loses, as in Stripe's test mode (see `disputes`).
//! - `POST /v1/refunds`, `GET /v1/refunds/{id}` (at most what was captured;
//!   refused, `charge_disputed`, while the charge has a dispute not won);
//!   `POST /v1/transfers`, `GET /v1/transfers/{id}`.
//! - `POST /v1/webhook_endpoints`, `GET /v1/webhook_endpoints/{id}`; events
//!   signed as Stripe signs them, delivered with retries.
//! - `POST /v1/reporting/report_runs`, `GET /v1/reporting/report_runs/{id}`
//!   (report type `balance_change_from_activity.itemized.3`, the settlement
//!   report's lines) and `GET /v1/files/{id}/contents`: the sandbox is its
//!   own files host.
//! - Sandbox extensions: `GET|POST /v1/sandbox/faults`,
//!   `GET /v1/sandbox/settlement_reports/{YYYY-MM-DD}` (CSV; a shortcut
//!   for the report runs), `GET /v1/sandbox/requests?limit=` (the request
//!   log, newest first: each API request with the `Stripe-Version` it
//!   carried, or none, and the version it was served with).
//!
//! `Stripe-Version` as on Stripe: a request without it is served with the
//! account's default version (the newest) and logged as having none; a
//! version Stripe never released is refused (400 `invalid_request_error`).
//! As on Stripe since 2023-08-16, a PaymentIntent given neither
//! `automatic_payment_methods` nor `payment_method_types` accepts the
//! Dashboard's payment methods, redirects included, so confirming it needs a
//! `return_url` (or `off_session=true`); `automatic_payment_methods[enabled]=true`
//! with `[allow_redirects]=never`, or `payment_method_types[]=card`, lifts that.
//!
//! Deliberate differences from Stripe, for tests:
//! - `expires_at` of a checkout session may be anything in the next 24 h
//!   (Stripe requires at least 30 minutes), so tests can watch one expire.
//! - Refunds start `pending` (event `refund.created`) and are settled by the
//!   ticker about half a second later to `succeeded`, or to `failed` when
//!   `metadata[sandbox_outcome]=fail` or the amount is exactly 13 minor units
//!   (0.13 USD); either way `refund.updated`.
//! - Transfers carry a sandbox field `status`: `pending` (event
//!   `transfer.created`), then `paid`, or `failed` for a destination starting
//!   `acct_fail` (reversed in full: `reversed: true`, `amount_reversed` =
//!   amount, event `transfer.reversed`); either way `transfer.updated`.
//!   Destinations must start `acct_`. Balances are not checked.
//! - `/v1/sandbox/*` needs the secret key too; faults never apply there nor
//!   to the hosted page. `faults.seed` 0 draws from entropy; any other value
//!   makes the draws reproducible.
//! - Report runs finish about 0.3 s after they are created, and may cover
//!   any interval, the current moment included (see `reporting`).
//! - An authorization not captured expires after `[sandbox]
//!   authorization_days` (7 as on Stripe, but a decimal so tests can make
//!   it seconds); a dispute opens `dispute_after_ms` (3 s) after capture, and
//!   submitted evidence is decided about 0.5 s later (Stripe takes minutes);
//!   other evidence than `winning_evidence`/`losing_evidence` stays
//!   `under_review` for good. `due_by` is 7 days after the dispute opens.
//! - A dispute withdraws `[sandbox] dispute_fee` (15.00 in the charge's own
//!   currency, rounded to its minor unit; Stripe charges 15.00 USD or a
//!   local equivalent) and a won one gives the amount back, not the fee:
//!   balance lines `dispute` and `dispute_reversal` (Stripe's balance
//!   transaction type `adjustment`), with the dispute `du_…` as source.
//! - Disputes keep only `evidence[uncategorized_text]` (at most 20,000
//!   characters); the other evidence fields are shown null and refused on
//!   update. Updating a dispute under review is refused with code
//!   `dispute_already_submitted`, a closed one (or closing it again) with
//!   `dispute_already_closed`: sandbox codes, Stripe sends a message only.
//! - The routes of manual capture and disputes refuse unknown parameters
//!   (`parameter_unknown`, as Stripe does); the older routes ignore them.
//!   Capture takes only `amount_to_capture` and `metadata` (Stripe's
//!   `application_fee_amount`, `final_capture`, `statement_descriptor*` are
//!   refused as unknown); one capture per PaymentIntent, the rest released.
//!   A PaymentIntent's `capture_method` is set when it is created (a
//!   `capture_method` sent to `/confirm` is ignored). A hosted session paid
//!   for manual capture stays `complete`/`unpaid` after its PaymentIntent is
//!   captured or canceled: the PaymentIntent tells what became of it.
//! - Injected 500s (`faults.error_rate`) happen before the work and are not
//!   stored under the idempotency key (they model a failure in front of the
//!   API); a retry with the same key does the work.
//! - Objects have the shape of API versions from 2022-08-01 on whatever the
//!   version; the one behaviour that follows it is the default of
//!   `automatic_payment_methods` above. A version dated after the newest the
//!   sandbox knows is taken if it is well formed and not in the future
//!   (Stripe releases one a month; see `versions`).
//! - The account has only cards enabled: `payment_method_types` other than
//!   `card` are refused as not activated.
//!
//! The secret key is taken as `Authorization: Bearer sk_…` or, as Stripe
//! also does, as the HTTP Basic user (`curl -u sk_…:`).
//!
//! Files: `api` (the request pipeline: auth, version, faults, idempotency,
//! replies), `versions` (`Stripe-Version`), `request_log`,
//! `params` (bracket parsing), `error` (error shapes), `idempotency`,
//! `faults`, `checkout` (sessions), `hosted` (the payment page), `cards`
//! (test cards and payment methods), `payment_intents` (and its `capture`:
//! capture, cancel, expiry), `disputes`, `refunds`, `transfers`, `balance`
//! (balance transactions and fees), `settlement` (the report), `reporting`
//! (report runs and their files), `events` (events and endpoints),
//! `delivery` (the webhook sender), `ticker` (expiry, asynchronous
//! settlement, disputes' timing), `sql` (reading rows), `routes`.

mod api;
mod balance;
mod cards;
mod checkout;
mod delivery;
mod disputes;
mod error;
mod events;
mod faults;
mod hosted;
mod idempotency;
mod ids;
mod params;
mod payment_intents;
mod refunds;
mod reply;
mod reporting;
mod request_log;
mod routes;
mod settlement;
mod sql;
mod ticker;
mod transfers;
mod versions;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio::sync::Notify;

use crate::config::{PspSettings, SandboxSettings};
use crate::db::{Db, sandbox_migrations};

pub use faults::Faults;
/// The version a request without `Stripe-Version` is served with.
pub use versions::ACCOUNT_DEFAULT as ACCOUNT_DEFAULT_VERSION;

/// Connections in the sandbox's pool.
const POOL_SIZE: u32 = 4;
const BUSY_TIMEOUT_MS: u64 = 5_000;
/// HTTP worker threads: the sandbox is a test double, two are plenty.
const HTTP_WORKERS: usize = 2;
/// How long a stopping server waits for in-flight requests.
const SHUTDOWN_TIMEOUT_S: u64 = 5;
/// The webhook endpoint for till itself, present from the start.
pub const TILL_ENDPOINT_ID: &str = "we_till";

/// Everything the handlers and background tasks share, besides the database.
pub struct Shared {
    /// `http://{bound address}`: the hosted pages' links start here.
    pub base_url: String,
    pub secret_key: String,
    pub settings: SandboxSettings,
    pub faults: Faults,
    /// Woken when a transaction has queued webhook deliveries.
    pub wake_delivery: Notify,
    /// Idempotency keys of requests under way in this process (the sandbox
    /// is one process, so this is the lock; the reply is stored durably
    /// with the work it answers).
    pub in_flight: idempotency::InFlight,
    /// The request log's writer.
    pub requests: request_log::RequestLog,
}

/// A cheap-to-clone handle on the running sandbox.
#[derive(Clone)]
pub struct Sandbox {
    pub db: Db,
    pub shared: Arc<Shared>,
}

/// Builds the sandbox server on an already-bound listener (port 0 in tests).
/// `till_webhook_url` is where till's events go (the endpoint that exists from the start,
/// id "we_till", secret = psp.webhook_secret). Starts its background tasks (webhook delivery,
/// session expiry) on the current tokio runtime.
pub fn build(
    listener: TcpListener,
    settings: &SandboxSettings,
    psp: &PspSettings,
    till_webhook_url: String,
) -> anyhow::Result<actix_web::dev::Server> {
    let runtime = tokio::runtime::Handle::try_current()
        .context("the sandbox must be built inside a tokio runtime (its background tasks run there)")?;
    let address = listener.local_addr().context("reading the sandbox's bound address")?;
    let db = Db::open(&settings.database_path, POOL_SIZE, BUSY_TIMEOUT_MS, &sandbox_migrations())
        .context("opening the sandbox database")?;
    let conn = db.conn()?;
    events::upsert_endpoint(&conn, TILL_ENDPOINT_ID, &till_webhook_url, &psp.webhook_secret)
        .context("registering till's webhook endpoint")?;
    idempotency::release_orphans(&conn).context("releasing idempotency keys of a stopped process")?;
    drop(conn);
    let requests = request_log::RequestLog::spawn(db.clone(), &runtime);
    let sandbox = Sandbox {
        db,
        shared: Arc::new(Shared {
            base_url: crate::config::public_base(&settings.public_url, address),
            secret_key: psp.secret_key.clone(),
            settings: settings.clone(),
            faults: Faults::new(&settings.faults),
            wake_delivery: Notify::new(),
            in_flight: idempotency::InFlight::default(),
            requests,
        }),
    };
    runtime.spawn(delivery::run(sandbox.clone(), delivery::client()?));
    runtime.spawn(ticker::run(sandbox.clone()));

    let data = web::Data::new(sandbox);
    let server = HttpServer::new(move || {
        App::new().wrap(routes::security_headers()).app_data(data.clone()).configure(routes::configure)
    })
    .workers(HTTP_WORKERS)
    .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
    .listen(listener)
    .context("listening on the sandbox's socket")?
    .run();
    tracing::debug!(%address, "sandbox PSP listening");
    Ok(server)
}
