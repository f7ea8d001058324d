//! Reading the sandbox's rows: JSON columns (metadata, Stripe sub-objects)
//! parsed where the row is read, their failures reported as rusqlite's.

use rusqlite::Row;
use rusqlite::types::Type;
use serde::de::DeserializeOwned;

/// Column `i`, JSON text, parsed.
pub fn json<T: DeserializeOwned>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    let raw: String = r.get(i)?;
    serde_json::from_str(&raw).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

/// Column `i`, JSON text or NULL, parsed.
pub fn opt_json<T: DeserializeOwned>(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<T>> {
    let raw: Option<String> = r.get(i)?;
    raw.map(|raw| {
        serde_json::from_str(&raw).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
    })
    .transpose()
}

/// A stored value this code never writes (a CHECK constraint keeps it out).
pub fn unexpected(i: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, Type::Text, what.into())
}
