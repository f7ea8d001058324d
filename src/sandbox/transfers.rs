//! Transfers to a seller's connected account (`acct_…`), Stripe's shape plus
//! a sandbox `status`: created `pending` (event `transfer.created`), settled
//! by the ticker to `paid` (booked in the balance; event `transfer.updated`)
//! or, for a destination starting `acct_fail`, to `failed`: reversed in
//! full (`reversed: true`, `amount_reversed` = amount; events
//! `transfer.reversed` and `transfer.updated`). The sandbox does not check
//! the merchant's balance before a transfer.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Shared;
use super::balance::{self, Category, Entry};
use super::error::StripeError;
use super::events;
use super::ids::{new_id, now_ms, now_s};
use super::params::{Metadata, Params};
use super::payment_intents::MAX_DESCRIPTION_CHARS;
use super::reply::Reply;

/// A transfer is settled this long after it is created.
pub const SETTLE_DELAY_MS: i64 = 500;
/// Destinations starting with this fail.
pub const FAILING_DESTINATION_PREFIX: &str = "acct_fail";
const MAX_DESTINATION_CHARS: usize = 255;

#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    pub id: String,
    pub object: &'static str,
    pub amount: i64,
    pub amount_reversed: i64,
    pub created: i64,
    pub currency: String,
    pub description: Option<String>,
    pub destination: String,
    pub livemode: bool,
    pub metadata: Metadata,
    pub reversed: bool,
    /// Sandbox extension: `pending`, `paid` or `failed`.
    pub status: String,
}

/// `POST /v1/transfers` (`amount`, `currency`, `destination`, `metadata[]`, `description`).
pub fn create(conn: &Connection, shared: &Shared, params: Params) -> Result<Reply, StripeError> {
    let amount = params.amount("amount")?;
    let currency = params.currency("currency")?;
    let destination = params.req_str("destination")?;
    if !destination.starts_with("acct_") || destination.chars().count() > MAX_DESTINATION_CHARS {
        return Err(StripeError::InvalidRequest {
            code: Some("resource_missing"),
            param: Some("destination".into()),
            message: format!("No such destination: '{}'", super::error::truncate(&destination, 80)),
        });
    }
    let description = params.opt_str("description")?;
    if description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        return Err(StripeError::invalid(
            "parameter_invalid",
            "description",
            format!("description can be at most {MAX_DESCRIPTION_CHARS} characters."),
        ));
    }
    let metadata = params.metadata("metadata")?;
    let id = new_id("tr_");
    conn.execute(
        "INSERT INTO transfers (id, amount, currency, destination, status, description, metadata, settle_at_ms, created)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?8)",
        params![
            id,
            amount,
            currency,
            destination,
            description,
            serde_json::to_string(&metadata).map_err(anyhow::Error::from)?,
            now_ms() + SETTLE_DELAY_MS,
            now_s()
        ],
    )
    .map_err(anyhow::Error::from)?;
    let transfer = load_required(conn, &id)?;
    events::emit(conn, shared, "transfer.created", &transfer)?;
    Reply::ok(&transfer)
}

/// `GET /v1/transfers/{id}`.
pub fn retrieve(conn: &Connection, id: &str) -> Result<Reply, StripeError> {
    let transfer = load(conn, id)?.ok_or_else(|| StripeError::no_such("transfer", id, Some("transfer")))?;
    Reply::ok(&transfer)
}

/// Pending transfers whose time has come, at most `limit`.
pub fn due(conn: &Connection, now_ms: i64, limit: i64) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT id FROM transfers WHERE status = 'pending' AND settle_at_ms <= ?1 ORDER BY settle_at_ms LIMIT ?2",
    )?;
    let ids = stmt.query_map(params![now_ms, limit], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// `pending` → `paid` or `failed`, with its events.
pub fn settle(conn: &Connection, shared: &Shared, id: &str) -> anyhow::Result<()> {
    let Some(transfer) = load(conn, id)?.filter(|t| t.status == "pending") else {
        return Ok(());
    };
    let fails = transfer.destination.starts_with(FAILING_DESTINATION_PREFIX);
    let changed = if fails {
        conn.execute(
            "UPDATE transfers SET status = 'failed', amount_reversed = amount WHERE id = ?1 AND status = 'pending'",
            [id],
        )?
    } else {
        conn.execute("UPDATE transfers SET status = 'paid' WHERE id = ?1 AND status = 'pending'", [id])?
    };
    anyhow::ensure!(changed == 1, "transfer {id} left 'pending' while settling");
    let transfer = load_required(conn, id)?;
    if fails {
        events::emit(conn, shared, "transfer.reversed", &transfer)?;
    } else {
        book(conn, &transfer)?;
    }
    events::emit(conn, shared, "transfer.updated", &transfer)?;
    Ok(())
}

fn book(conn: &Connection, transfer: &Transfer) -> anyhow::Result<()> {
    balance::book(
        conn,
        &Entry {
            created: now_s(),
            currency: &transfer.currency,
            amount: -transfer.amount,
            fee: 0,
            category: Category::Transfer,
            source_id: &transfer.id,
            payment_intent: None,
            description: transfer.description.as_deref(),
            payment_metadata: &transfer.metadata,
        },
    )?;
    Ok(())
}

fn load_required(conn: &Connection, id: &str) -> anyhow::Result<Transfer> {
    load(conn, id)?.ok_or_else(|| anyhow::anyhow!("transfer {id} vanished"))
}

fn load(conn: &Connection, id: &str) -> anyhow::Result<Option<Transfer>> {
    let row = conn
        .query_row(
            "SELECT id, amount, amount_reversed, currency, description, destination, metadata, status, created
             FROM transfers WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?),
                    (r.get::<_, String>(3)?, r.get::<_, Option<String>>(4)?, r.get::<_, String>(5)?),
                    (r.get::<_, String>(6)?, r.get::<_, String>(7)?, r.get::<_, i64>(8)?),
                ))
            },
        )
        .optional()?;
    let Some(((id, amount, amount_reversed), (currency, description, destination), (metadata, status, created))) = row
    else {
        return Ok(None);
    };
    Ok(Some(Transfer {
        id,
        object: "transfer",
        amount,
        amount_reversed,
        created,
        currency,
        description,
        destination,
        livemode: false,
        metadata: serde_json::from_str(&metadata)?,
        reversed: amount_reversed > 0,
        status,
    }))
}
