//! Reading a settlement file: CSV parsed by header name (column order does
//! not matter, unknown columns are ignored), every value checked, amounts
//! parsed with the currency's exponent (never as floats, an empty amount is
//! an error and never zero). The first line that does not parse refuses the
//! whole file, naming its line and column.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

use crate::money::{Currency, parse_minor};

/// Longest id, description or category accepted in a cell.
const MAX_CELL_CHARS: usize = 500;

/// One line of a settlement file, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRow {
    /// 1-based line in the file (the header is line 1).
    pub line: i64,
    pub balance_transaction_id: String,
    /// RFC 3339 UTC with milliseconds, the format of till's own times.
    pub created_utc: String,
    pub available_on_utc: Option<String>,
    pub currency: Currency,
    /// Signed minor units: money in is positive; refunds, transfers and payouts are negative.
    pub gross_minor: i64,
    pub fee_minor: i64,
    pub net_minor: i64,
    pub reporting_category: String,
    pub source_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub description: Option<String>,
    pub checkout_id: Option<String>,
    pub payment_order_id: Option<String>,
}

impl SettlementRow {
    /// The UTC day the movement belongs to (`YYYY-MM-DD`).
    pub fn day(&self) -> &str {
        &self.created_utc[..10]
    }
}

/// Why a file was refused: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// 1-based line of the file; 0 when the file as a whole is refused (too large).
    pub line: u64,
    /// 1-based column and its header name, when one cell is at fault.
    pub column: Option<(usize, String)>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.column, self.line) {
            (Some((index, name)), line) => write!(f, "line {line}, column {index} ({name}): {}", self.message),
            (None, 0) => f.write_str(&self.message),
            (None, line) => write!(f, "line {line}: {}", self.message),
        }
    }
}

/// The limits a file must respect.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_rows: usize,
}

const REQUIRED: [&str; 7] =
    ["balance_transaction_id", "created_utc", "currency", "gross", "fee", "net", "reporting_category"];
const OPTIONAL: [&str; 6] = [
    "available_on_utc",
    "source_id",
    "payment_intent_id",
    "description",
    "payment_metadata[checkout_id]",
    "payment_metadata[payment_order_id]",
];

/// Every column read, in the order of Stripe's itemized report (and the
/// sandbox's): what a report run is asked for, so that its file carries
/// them all, Stripe's `payment_metadata[…]` ones included.
pub const REPORT_COLUMNS: [&str; 13] = [
    "balance_transaction_id",
    "created_utc",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "payment_intent_id",
    "description",
    "payment_metadata[checkout_id]",
    "payment_metadata[payment_order_id]",
];

/// Parses a whole file, or refuses it at its first bad line.
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Vec<SettlementRow>, ParseError> {
    if bytes.len() > limits.max_bytes {
        return Err(ParseError {
            line: 0,
            column: None,
            message: format!("the file has {} bytes, over the limit of {}", bytes.len(), limits.max_bytes),
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(bytes);
    let mut lines = LineCounter::new(bytes);
    let columns = Columns::read(&mut reader)?;
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let before = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map_or(before, csv::Position::byte);
                return Err(csv_error(&e, lines.line_at(at)));
            }
        }
        let line = lines.line_at(record.position().map_or(before, csv::Position::byte));
        if rows.len() == limits.max_rows {
            return Err(ParseError {
                line,
                column: None,
                message: format!("the file has more than {} rows", limits.max_rows),
            });
        }
        rows.push(columns.row(&record, line)?);
    }
    Ok(rows)
}

/// Line numbers from byte offsets, counted once through the file. (The csv
/// crate's own line of a record can lag by one after a CRLF terminator.)
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter { bytes, offset: 0, line: 1 }
    }

    /// The 1-based line of the record starting at `byte` (offsets only grow).
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut at = usize::try_from(byte).unwrap_or(usize::MAX).min(self.bytes.len());
        // A record's start may sit on the previous line's terminator.
        while at < self.bytes.len() && matches!(self.bytes[at], b'\r' | b'\n') {
            at += 1;
        }
        if at > self.offset {
            self.line += self.bytes[self.offset..at].iter().filter(|b| **b == b'\n').count() as u64;
            self.offset = at;
        }
        self.line
    }
}

fn csv_error(e: &csv::Error, line: u64) -> ParseError {
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("has {len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".to_string(),
        _ => format!("is not valid CSV: {e}"),
    };
    ParseError { line, column: None, message }
}

/// Where each known column sits in this file.
struct Columns {
    index: HashMap<&'static str, usize>,
}

impl Columns {
    fn read(reader: &mut csv::Reader<&[u8]>) -> Result<Columns, ParseError> {
        let header_error = |message: String| ParseError { line: 1, column: None, message };
        let headers = reader.headers().map_err(|e| csv_error(&e, 1))?.clone();
        if headers.is_empty() || headers.iter().all(str::is_empty) {
            return Err(header_error("the file is empty: a header line is required".into()));
        }
        let mut index = HashMap::new();
        for (i, name) in headers.iter().enumerate() {
            let name = name.trim();
            let Some(known) = REQUIRED.iter().chain(OPTIONAL.iter()).find(|k| **k == name) else { continue };
            if index.insert(*known, i).is_some() {
                return Err(header_error(format!("the header names column '{name}' twice")));
            }
        }
        let missing: Vec<&str> = REQUIRED.iter().filter(|c| !index.contains_key(*c)).copied().collect();
        if !missing.is_empty() {
            return Err(header_error(format!("the header lacks the column(s) {}", missing.join(", "))));
        }
        Ok(Columns { index })
    }

    fn row(&self, record: &csv::StringRecord, line: u64) -> Result<SettlementRow, ParseError> {
        let file_line = i64::try_from(line).map_err(|_| ParseError {
            line,
            column: None,
            message: "the file has too many lines".into(),
        })?;
        let cell = Cell { columns: self, record, line };
        let currency = cell.currency("currency")?;
        let gross_minor = cell.amount("gross", currency)?;
        let fee_minor = cell.amount("fee", currency)?;
        let net_minor = cell.amount("net", currency)?;
        if gross_minor.checked_sub(fee_minor) != Some(net_minor) {
            return Err(cell.error(
                "net",
                format!("net {net_minor} minor units is not gross {gross_minor} minus fee {fee_minor}"),
            ));
        }
        Ok(SettlementRow {
            line: file_line,
            balance_transaction_id: cell.text("balance_transaction_id")?.ok_or_else(|| {
                cell.error("balance_transaction_id", "is empty; every row needs its balance transaction id".into())
            })?,
            created_utc: cell.time("created_utc")?.ok_or_else(|| cell.error("created_utc", "is empty".into()))?,
            available_on_utc: cell.time("available_on_utc")?,
            currency,
            gross_minor,
            fee_minor,
            net_minor,
            reporting_category: cell
                .text("reporting_category")?
                .map(|c| c.to_ascii_lowercase())
                .ok_or_else(|| cell.error("reporting_category", "is empty".into()))?,
            source_id: cell.text("source_id")?,
            payment_intent_id: cell.text("payment_intent_id")?,
            description: cell.text("description")?,
            checkout_id: cell.text("payment_metadata[checkout_id]")?,
            payment_order_id: cell.text("payment_metadata[payment_order_id]")?,
        })
    }
}

/// The cells of one record, read by column name.
struct Cell<'a> {
    columns: &'a Columns,
    record: &'a csv::StringRecord,
    line: u64,
}

impl Cell<'_> {
    fn error(&self, name: &str, message: String) -> ParseError {
        let index = self.columns.index.get(name).map_or(0, |i| i + 1);
        ParseError { line: self.line, column: Some((index, name.to_string())), message }
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.columns.index.get(name).and_then(|i| self.record.get(*i)).map(str::trim)
    }

    /// A text cell: trimmed, empty = absent, bounded, no control characters.
    fn text(&self, name: &str) -> Result<Option<String>, ParseError> {
        let Some(value) = self.raw(name).filter(|v| !v.is_empty()) else { return Ok(None) };
        if value.chars().count() > MAX_CELL_CHARS || value.chars().any(char::is_control) {
            return Err(self.error(name, format!("must be at most {MAX_CELL_CHARS} printable characters")));
        }
        Ok(Some(value.to_string()))
    }

    fn currency(&self, name: &str) -> Result<Currency, ParseError> {
        let value = self.raw(name).unwrap_or_default();
        Currency::parse(&value.to_ascii_uppercase()).map_err(|e| self.error(name, e.to_string()))
    }

    /// A signed amount in major units with at most the currency's decimals.
    fn amount(&self, name: &str, currency: Currency) -> Result<i64, ParseError> {
        let value = self.raw(name).unwrap_or_default();
        let (negative, digits) = match value.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        let minor = parse_minor(digits, currency).map_err(|e| {
            let why = match e {
                crate::money::MoneyError::NotADecimal(_) => {
                    format!("'{}' is not an amount in major units, like -25.00", shown(value))
                }
                other => format!("'{}' {other}", shown(value)),
            };
            self.error(name, why)
        })?;
        Ok(if negative { -minor } else { minor })
    }

    /// Stripe's report format `2025-01-31 13:45:00` (UTC), or RFC 3339.
    fn time(&self, name: &str) -> Result<Option<String>, ParseError> {
        let Some(value) = self.raw(name).filter(|v| !v.is_empty()) else { return Ok(None) };
        let parsed = NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S")
            .map(|t| t.and_utc())
            .or_else(|_| DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)))
            .map_err(|_| self.error(name, format!("'{}' is not a UTC time like 2025-01-31 13:45:00", shown(value))))?;
        Ok(Some(parsed.to_rfc3339_opts(SecondsFormat::Millis, true)))
    }
}

/// A cell's value as quoted in an error: short, so a huge cell does not flood the message.
fn shown(value: &str) -> String {
    value.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_bytes: 1 << 20, max_rows: 100 };
    const HEADER: &str = "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,\
                          reporting_category,source_id,payment_intent_id,description,\
                          payment_metadata[checkout_id],payment_metadata[payment_order_id]\r\n";

    fn file(lines: &[&str]) -> Vec<u8> {
        let mut s = HEADER.to_string();
        for l in lines {
            s.push_str(l);
            s.push_str("\r\n");
        }
        s.into_bytes()
    }

    #[test]
    fn a_report_run_asks_for_every_column_read() {
        let mut read: Vec<&str> = REQUIRED.iter().chain(OPTIONAL.iter()).copied().collect();
        let mut asked = REPORT_COLUMNS.to_vec();
        read.sort_unstable();
        asked.sort_unstable();
        assert_eq!(asked, read);
        assert_eq!(REPORT_COLUMNS.join(",") + "\r\n", HEADER);
    }

    #[test]
    fn reads_the_sandbox_format() {
        let rows = parse(
            &file(&[
                "txn_1,2025-01-31 13:45:00,2025-01-31 13:45:00,usd,25.00,1.03,23.97,charge,ch_1,pi_1,\"order, x\",co_1,",
                "txn_2,2025-01-31 23:59:59,2025-01-31 23:59:59,usd,-23.97,0.00,-23.97,payout,po_1,,STRIPE PAYOUT,,",
            ]),
            LIMITS,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        let charge = &rows[0];
        assert_eq!((charge.line, charge.gross_minor, charge.fee_minor, charge.net_minor), (2, 2500, 103, 2397));
        assert_eq!(charge.currency.code(), "USD");
        assert_eq!(charge.created_utc, "2025-01-31T13:45:00.000Z");
        assert_eq!(charge.day(), "2025-01-31");
        assert_eq!(charge.description.as_deref(), Some("order, x"));
        assert_eq!(charge.checkout_id.as_deref(), Some("co_1"));
        assert_eq!(charge.payment_order_id, None);
        assert_eq!((rows[1].gross_minor, rows[1].reporting_category.as_str()), (-2397, "payout"));
    }

    #[test]
    fn columns_are_found_by_name_in_any_order() {
        let csv = "net,fee,gross,currency,reporting_category,created_utc,balance_transaction_id,extra\n\
                   9.70,0.30,10.00,EUR,charge,2025-01-31T10:00:00Z,txn_9,whatever\n";
        let rows = parse(csv.as_bytes(), LIMITS).unwrap();
        assert_eq!((rows[0].gross_minor, rows[0].currency.code()), (1000, "EUR"));
        assert_eq!(rows[0].source_id, None);
    }

    #[test]
    fn a_bad_cell_names_its_line_and_column() {
        let good = "txn_1,2025-01-31 13:45:00,,usd,25.00,1.03,23.97,charge,ch_1,pi_1,,,";
        let cases = [
            ("txn_2,2025-01-31 13:45:00,,usd,2x.00,1.03,23.97,charge,ch_2,,,,", 5, "gross"),
            ("txn_2,2025-01-31 13:45:00,,usd,,1.03,23.97,charge,ch_2,,,,", 5, "gross"),
            ("txn_2,2025-01-31 13:45:00,,usd,25.001,1.03,23.97,charge,ch_2,,,,", 5, "gross"),
            ("txn_2,2025-01-31 13:45:00,,usd,25.00,1.03,23.00,charge,ch_2,,,,", 7, "net"),
            ("txn_2,2025-01-31 13:45:00,,usd,1e3,0,1e3,charge,ch_2,,,,", 5, "gross"),
            ("txn_2,yesterday,,usd,25.00,1.03,23.97,charge,ch_2,,,,", 2, "created_utc"),
            ("txn_2,2025-01-31 13:45:00,,usx,25.00,1.03,23.97,charge,ch_2,,,,", 4, "currency"),
            (",2025-01-31 13:45:00,,usd,25.00,1.03,23.97,charge,ch_2,,,,", 1, "balance_transaction_id"),
            ("txn_2,2025-01-31 13:45:00,,usd,25.00,1.03,23.97,,ch_2,,,,", 8, "reporting_category"),
        ];
        for (bad, index, name) in cases {
            let err = parse(&file(&[good, bad]), LIMITS).unwrap_err();
            assert_eq!((err.line, err.column.clone()), (3, Some((index, name.to_string()))), "{bad}: {err}");
            assert!(err.to_string().starts_with(&format!("line 3, column {index} ({name}): ")), "{err}");
        }
    }

    #[test]
    fn malformed_files_are_refused() {
        let short = parse(&file(&["txn_1,2025-01-31 13:45:00,,usd,25.00"]), LIMITS).unwrap_err();
        assert_eq!(short.line, 2, "{short}");
        assert!(short.to_string().contains("fields"), "{short}");
        let no_header = parse(b"", LIMITS).unwrap_err();
        assert_eq!(no_header.line, 1);
        let missing = parse(b"balance_transaction_id,currency\n", LIMITS).unwrap_err();
        assert!(missing.message.contains("gross"), "{missing}");
        let twice =
            parse(b"gross,gross,fee,net,currency,created_utc,balance_transaction_id,reporting_category\n", LIMITS)
                .unwrap_err();
        assert!(twice.message.contains("twice"), "{twice}");
        let not_utf8 = parse(&file(&["txn_1,2025-01-31 13:45:00,,usd,25.00,0,25.00,charge,\u{0}\u{0},,,,"]), LIMITS);
        assert!(not_utf8.is_err());
    }

    #[test]
    fn limits_hold() {
        let line = "txn_1,2025-01-31 13:45:00,,usd,1.00,0.00,1.00,charge,ch_1,,,,";
        let lines = vec![line; 3];
        let err = parse(&file(&lines), Limits { max_bytes: 1 << 20, max_rows: 2 }).unwrap_err();
        assert_eq!(err.line, 4);
        let err = parse(&file(&lines), Limits { max_bytes: 100, max_rows: 10 }).unwrap_err();
        assert_eq!(err.line, 0);
        assert!(parse(&file(&[]), LIMITS).unwrap().is_empty(), "a header alone is an empty report");
    }

    #[test]
    fn exponents_follow_the_currency() {
        let rows = parse(
            &file(&[
                "txn_1,2025-01-31 13:45:00,,jpy,1000,30,970,charge,ch_1,,,,",
                "txn_2,2025-01-31 13:45:00,,bhd,-1.250,0.000,-1.250,refund,re_1,,,,",
            ]),
            LIMITS,
        )
        .unwrap();
        assert_eq!((rows[0].gross_minor, rows[1].gross_minor), (1000, -1250));
        assert!(parse(&file(&["txn_1,2025-01-31 13:45:00,,jpy,10.5,0,10.5,charge,ch_1,,,,"]), LIMITS).is_err());
    }
}
