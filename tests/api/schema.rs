//! SQLite's migrations and PostgreSQL's are kept in step by hand: a fresh
//! database of each must have the same tables, the same columns (of the
//! same kind of value, NULL allowed or not), the same unique constraints
//! (primary keys, unique constraints and unique indexes, partial or not)
//! and the same other indexes, whatever their names. Runs when
//! the suite has a PostgreSQL server (`TILL_TEST_POSTGRES_URL`), whichever
//! engine the rest of the suite runs on.

use std::collections::{BTreeMap, BTreeSet};

use crate::helpers::fresh_postgres_database;

/// One table as both engines can describe it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// Column name → (kind of value, NOT NULL).
    columns: BTreeMap<String, (Kind, bool)>,
    /// Each index, the primary key's and unique constraints' included.
    indexes: BTreeSet<Index>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Index {
    unique: bool,
    /// Its columns in order (an expression as `<expression>`).
    columns: Vec<String>,
    partial: bool,
}

type Schema = BTreeMap<String, Table>;

/// What a column holds, in the terms both engines share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Integer,
    Real,
    Text,
    Blob,
    Other,
}

/// Tables that are an engine's own bookkeeping, not till's schema.
const ENGINE_TABLES: &[&str] = &["till_schema_migrations", "till_write_turn"];

/// SQLite's type affinity rules (https://www.sqlite.org/datatype3.html, 3.1).
fn sqlite_kind(declared: &str) -> Kind {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        Kind::Integer
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        Kind::Text
    } else if t.is_empty() || t.contains("BLOB") {
        Kind::Blob
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        Kind::Real
    } else {
        Kind::Other
    }
}

fn postgres_kind(data_type: &str) -> Kind {
    match data_type {
        "bigint" | "integer" | "smallint" | "boolean" => Kind::Integer,
        "double precision" | "real" => Kind::Real,
        "text" | "character varying" | "character" => Kind::Text,
        "bytea" => Kind::Blob,
        _ => Kind::Other,
    }
}

fn sqlite_schema() -> Schema {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    till::db::migrate_sqlite(&mut conn, &till::db::till_migrations()).unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut schema = Schema::new();
    for name in names {
        let mut table = Table::default();
        let mut primary_key: Vec<(i64, String)> = Vec::new();
        let mut st = conn.prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)").unwrap();
        let rows = st.query_map([&name], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, r.get::<_, i64>(3)?))
        });
        for (column, declared, not_null, pk) in rows.unwrap().map(Result::unwrap) {
            if pk > 0 {
                primary_key.push((pk, column.clone()));
            }
            // An INTEGER PRIMARY KEY is the rowid: never NULL, though not declared so.
            let rowid = pk > 0 && declared.eq_ignore_ascii_case("INTEGER");
            table.columns.insert(column, (sqlite_kind(&declared), not_null || rowid));
        }
        primary_key.sort();
        let columns = primary_key.into_iter().map(|(_, c)| c).collect();
        table.indexes.insert(Index { unique: true, columns, partial: false });
        let mut st = conn.prepare("SELECT name, \"unique\", partial FROM pragma_index_list(?1)").unwrap();
        let indexes: Vec<(String, bool, bool)> =
            st.query_map([&name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
        for (index, unique, partial) in indexes {
            let mut st = conn.prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno").unwrap();
            let columns: Vec<String> = st
                .query_map([&index], |r| r.get::<_, Option<String>>(0))
                .unwrap()
                .map(|c| c.unwrap().unwrap_or_else(|| "<expression>".into()))
                .collect();
            table.indexes.insert(Index { unique, columns, partial });
        }
        schema.insert(name, table);
    }
    schema
}

fn postgres_schema(url: &str) -> Schema {
    // Migrated as till migrates it.
    till::db::Db::open_postgres(url, 1, std::time::Duration::from_secs(5)).unwrap();
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let mut schema = Schema::new();
    for row in client
        .query(
            "SELECT c.table_name, c.column_name, c.data_type, c.is_nullable = 'NO'
             FROM information_schema.columns c
             JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'",
            &[],
        )
        .unwrap()
    {
        let (table, column, data_type, not_null): (String, String, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        schema.entry(table).or_default().columns.insert(column, (postgres_kind(&data_type), not_null));
    }
    // Indexes, the primary key's and unique constraints' included; an
    // expression's place in an index has no column (attnum 0).
    for row in client
        .query(
            "SELECT t.relname::text, ix.indisunique, ix.indpred IS NOT NULL,
                    ARRAY(SELECT COALESCE(a.attname::text, '<expression>')
                          FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                          LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum AND k.attnum > 0
                          ORDER BY k.n)
             FROM pg_index ix
             JOIN pg_class t ON t.oid = ix.indrelid
             JOIN pg_namespace ns ON ns.oid = t.relnamespace
             WHERE ns.nspname = 'public'",
            &[],
        )
        .unwrap()
    {
        let (table, unique, partial, columns) = (row.get::<_, String>(0), row.get(1), row.get(2), row.get(3));
        schema.entry(table).or_default().indexes.insert(Index { unique, columns, partial });
    }
    for engine_table in ENGINE_TABLES {
        schema.remove(*engine_table);
    }
    schema
}

/// Every difference, one line each, so that a failure lists them all.
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut found = Vec::new();
    let names: BTreeSet<&String> = sqlite.keys().chain(postgres.keys()).collect();
    for name in names {
        let (Some(s), Some(p)) = (sqlite.get(name), postgres.get(name)) else {
            let only = if sqlite.contains_key(name) { "SQLite" } else { "PostgreSQL" };
            found.push(format!("table {name}: only on {only}"));
            continue;
        };
        let columns: BTreeSet<&String> = s.columns.keys().chain(p.columns.keys()).collect();
        for column in columns {
            let (a, b) = (s.columns.get(column), p.columns.get(column));
            if a != b {
                found.push(format!("{name}.{column}: SQLite {a:?}, PostgreSQL {b:?}"));
            }
        }
        for index in s.indexes.symmetric_difference(&p.indexes) {
            let only = if s.indexes.contains(index) { "SQLite" } else { "PostgreSQL" };
            found.push(format!("{name}: {index:?} only on {only}"));
        }
    }
    found
}

#[test]
fn both_engines_have_the_same_tables_columns_unique_constraints_and_indexes() {
    let Ok(server) = std::env::var("TILL_TEST_POSTGRES_URL") else {
        eprintln!("no TILL_TEST_POSTGRES_URL: the schemas are compared when the suite has a PostgreSQL server");
        return;
    };
    let url = fresh_postgres_database(&server);
    let (sqlite, postgres) = (sqlite_schema(), postgres_schema(&url));
    assert!(sqlite.len() > 20, "the SQLite schema was read: {:?}", sqlite.keys());
    let differences = differences(&sqlite, &postgres);
    assert!(differences.is_empty(), "the engines' schemas differ:\n{}", differences.join("\n"));
}
