//! A sandbox database made before manual capture and disputes (version 4)
//! migrates with its rows intact: migrations 5 and 6 rebuild
//! payment_intents, checkout_sessions and balance_transactions.

use rusqlite::Connection;
use till::db::{Db, sandbox_migrations};

/// Rows as a version-4 sandbox wrote them: a paid hosted checkout partly
/// refunded, an open one, an intent awaiting payment, and their lines.
const VERSION_4_ROWS: &str = r#"
INSERT INTO payment_intents (id, amount, currency, status, payment_method, description, metadata,
    last_payment_error, latest_charge, card_brand, card_last4, checkout_session, amount_refunded, created,
    automatic_payment_methods, statement_descriptor_suffix)
VALUES ('pi_paid', 2500, 'usd', 'succeeded', 'pm_1', 'mugs', '{"checkout_id":"chk_1","payment_order_id":"po_1"}',
        NULL, 'ch_1', 'visa', '4242', 'cs_paid', 500, 1700000000, NULL, 'MUGS'),
       ('pi_waiting', 900, 'jpy', 'requires_payment_method', NULL, NULL, '{}',
        '{"type":"card_error","code":"card_declined"}', NULL, NULL, NULL, NULL, 0, 1700000100,
        '{"allow_redirects":"never","enabled":true}', NULL);
INSERT INTO checkout_sessions (id, status, payment_status, mode, currency, amount_total, success_url, cancel_url,
    client_reference_id, metadata, payment_intent_metadata, payment_intent, expires_at, created,
    statement_descriptor_suffix)
VALUES ('cs_paid', 'complete', 'paid', 'payment', 'usd', 2500, 'https://shop.example/ok', NULL, 'checkout-1',
        '{"checkout_id":"chk_1"}', '{"checkout_id":"chk_1","payment_order_id":"po_1"}', 'pi_paid', 1700086400,
        1700000000, 'MUGS'),
       ('cs_open', 'open', 'unpaid', 'payment', 'eur', 100, 'https://shop.example/ok', NULL, NULL, '{}', '{}',
        NULL, 1700086400, 1700000000, NULL);
INSERT INTO checkout_line_items (session_id, position, name, unit_amount, quantity, amount_total)
VALUES ('cs_paid', 0, 'Mug', 1250, 2, 2500), ('cs_open', 0, 'Tea', 100, 1, 100);
INSERT INTO refunds (id, payment_intent, charge, amount, currency, status, failure_reason, metadata, settle_at_ms,
    created)
VALUES ('re_1', 'pi_paid', 'ch_1', 500, 'usd', 'succeeded', NULL, '{}', 1700000000500, 1700000010);
INSERT INTO balance_transactions (id, created, available_on, currency, amount, fee, net, reporting_category,
    source_id, payment_intent, description, payment_metadata)
VALUES ('txn_1', 1700000000, 1700000000, 'usd', 2500, 103, 2397, 'charge', 'ch_1', 'pi_paid', 'mugs',
        '{"checkout_id":"chk_1","payment_order_id":"po_1"}'),
       ('txn_2', 1700000010, 1700000010, 'usd', -500, 0, -500, 'refund', 're_1', 'pi_paid', 'REFUND FOR CHARGE',
        '{"checkout_id":"chk_1","payment_order_id":"po_1"}');
"#;

fn rows<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<Vec<T>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let width = stmt.column_count();
    stmt.query_map([], |r| (0..width).map(|i| r.get(i)).collect::<Result<Vec<T>, _>>())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_version_4_database_migrates_with_its_rows() {
    // Arrange: a database at version 4 with rows in every rebuilt table.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox.db");
    let mut old = Connection::open(&path).unwrap();
    sandbox_migrations().to_version(&mut old, 4).unwrap();
    old.execute_batch(VERSION_4_ROWS).unwrap();
    drop(old);

    // Act: the sandbox opens it.
    let db = Db::open(&path, 1, 1000, &sandbox_migrations()).unwrap();
    let conn = db.conn().unwrap();

    // Assert: every row is there, with the new columns filled as they were meant.
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 6);
    let intents: Vec<Vec<rusqlite::types::Value>> = rows(
        &conn,
        "SELECT id, status, amount, amount_received, amount_capturable, amount_refunded, capture_method,
                latest_charge, metadata, last_payment_error, automatic_payment_methods, statement_descriptor_suffix,
                canceled_at, card_disputes, dispute_at_ms
         FROM payment_intents ORDER BY id",
    );
    let text = |s: &str| rusqlite::types::Value::Text(s.into());
    let int = rusqlite::types::Value::Integer;
    let null = rusqlite::types::Value::Null;
    assert_eq!(
        intents,
        vec![
            vec![
                text("pi_paid"),
                text("succeeded"),
                int(2500),
                int(2500),
                int(0),
                int(500),
                text("automatic"),
                text("ch_1"),
                text(r#"{"checkout_id":"chk_1","payment_order_id":"po_1"}"#),
                null.clone(),
                null.clone(),
                text("MUGS"),
                null.clone(),
                int(0),
                null.clone(),
            ],
            vec![
                text("pi_waiting"),
                text("requires_payment_method"),
                int(900),
                int(0),
                int(0),
                int(0),
                text("automatic"),
                null.clone(),
                text("{}"),
                text(r#"{"type":"card_error","code":"card_declined"}"#),
                text(r#"{"allow_redirects":"never","enabled":true}"#),
                null.clone(),
                null.clone(),
                int(0),
                null,
            ],
        ]
    );
    let sessions: Vec<Vec<String>> = rows(
        &conn,
        "SELECT id, status, payment_status, COALESCE(payment_intent, '-'), capture_method,
                COALESCE(statement_descriptor_suffix, '-'), payment_intent_metadata
         FROM checkout_sessions ORDER BY id",
    );
    assert_eq!(
        sessions,
        vec![
            vec!["cs_open", "open", "unpaid", "-", "automatic", "-", "{}"],
            vec![
                "cs_paid",
                "complete",
                "paid",
                "pi_paid",
                "automatic",
                "MUGS",
                r#"{"checkout_id":"chk_1","payment_order_id":"po_1"}"#
            ],
        ]
    );
    let lines: Vec<Vec<String>> = rows(
        &conn,
        "SELECT id, reporting_category, source_id, CAST(amount AS TEXT), CAST(fee AS TEXT), CAST(net AS TEXT),
                description
         FROM balance_transactions ORDER BY id",
    );
    assert_eq!(
        lines,
        vec![
            vec!["txn_1", "charge", "ch_1", "2500", "103", "2397", "mugs"],
            vec!["txn_2", "refund", "re_1", "-500", "0", "-500", "REFUND FOR CHARGE"],
        ]
    );
    let counts: Vec<Vec<i64>> = rows(
        &conn,
        "SELECT (SELECT COUNT(*) FROM checkout_line_items), (SELECT COUNT(*) FROM refunds),
                (SELECT COUNT(*) FROM disputes), (SELECT COUNT(*) FROM pragma_foreign_key_check)",
    );
    assert_eq!(counts, vec![vec![2, 1, 0, 0]]);
}

#[test]
fn a_source_has_one_line_per_category() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("sandbox.db"), 1, 1000, &sandbox_migrations()).unwrap();
    let conn = db.conn().unwrap();
    let insert = |id: &str, category: &str, amount: i64| {
        conn.execute(
            "INSERT INTO balance_transactions (id, created, available_on, currency, amount, fee, net,
                 reporting_category, source_id, payment_intent, description, payment_metadata)
             VALUES (?1, 1, 1, 'usd', ?3, 0, ?3, ?2, 'du_1', 'pi_1', NULL, '{}')",
            rusqlite::params![id, category, amount],
        )
    };
    insert("txn_1", "dispute", -1000).unwrap();
    insert("txn_2", "dispute_reversal", 1000).unwrap();
    assert!(insert("txn_3", "dispute", -1000).is_err(), "a withdrawal is booked once");
    assert!(insert("txn_4", "chargeback", -1000).is_err(), "only the known categories");
}
