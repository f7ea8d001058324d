//! Stripe's request encoding: `application/x-www-form-urlencoded` with
//! bracket notation (`metadata[k]=v`, `line_items[0][price_data][currency]=usd`,
//! also Rack-style `line_items[][quantity]=1`), parsed into a tree and read
//! through typed accessors that answer with Stripe's errors naming the full
//! parameter path. Unknown parameters are ignored by the older routes (the
//! client libraries send extras such as `expand[]`); the routes of manual
//! capture and disputes refuse them as Stripe does ([`Params::only`]). The
//! ones read are strict about type.

use std::collections::BTreeMap;

use super::error::{StripeError, truncate};
use crate::money::Currency;

/// Pairs in one request body.
pub const MAX_PAIRS: usize = 1_000;
/// Brackets in one parameter name (`a[b][c][d]` is 4 deep).
pub const MAX_DEPTH: usize = 6;
pub const MAX_KEY_BYTES: usize = 256;
/// Items in one list parameter (Stripe's limit for `line_items`).
pub const MAX_LIST_ITEMS: usize = 100;
/// Stripe's metadata limits.
pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_CHARS: usize = 40;
pub const MAX_METADATA_VALUE_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Value(String),
    Map(BTreeMap<String, Node>),
    List(Vec<Node>),
}

/// One level of parameters, with the path that names them in errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    prefix: String,
    map: BTreeMap<String, Node>,
}

pub type Metadata = BTreeMap<String, String>;

/// `metadata[k]=v` on an update, as Stripe merges it: each key given is set,
/// an empty value unsets it, and `metadata=` (empty) unsets them all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataPatch {
    clear: bool,
    changes: BTreeMap<String, Option<String>>,
}

/// Parameters every route takes and ignores, as Stripe's libraries may send them.
const ALWAYS_ACCEPTED: [&str; 1] = ["expand"];

/// Stripe's largest amount (99,999,999 minor units, $999,999.99).
pub const MAX_AMOUNT_MINOR: i64 = crate::money::MAX_CHARGE_MINOR;

/// Parses a form-encoded body (or query string) into parameters.
pub fn parse(body: &[u8]) -> Result<Params, StripeError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| StripeError::InvalidRequest {
        code: None,
        param: None,
        message: "Invalid request body: expected application/x-www-form-urlencoded.".into(),
    })?;
    if pairs.len() > MAX_PAIRS {
        return Err(invalid_body(format!("Too many parameters (at most {MAX_PAIRS}).")));
    }
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        let segments = split_key(&key)?;
        insert(&mut map, &segments, value).map_err(|why| StripeError::InvalidRequest {
            code: None,
            param: Some(truncate(&key, 80)),
            message: format!("Invalid parameter {}: {why}", truncate(&key, 80)),
        })?;
    }
    Ok(Params { prefix: String::new(), map })
}

/// An amount in minor units that Stripe would charge: 1 to [`MAX_AMOUNT_MINOR`].
pub fn check_amount(amount: i64, param: &str) -> Result<i64, StripeError> {
    if amount < 1 {
        return Err(StripeError::invalid(
            "amount_too_small",
            param,
            format!("{param} must be at least 1 (in the currency's minor unit)."),
        ));
    }
    if amount > MAX_AMOUNT_MINOR {
        return Err(StripeError::invalid(
            "amount_too_large",
            param,
            format!("{param} must be no larger than {MAX_AMOUNT_MINOR}."),
        ));
    }
    Ok(amount)
}

impl MetadataPatch {
    /// `metadata` with the patch applied, within Stripe's limit of keys
    /// (`param` names the parameter in the error).
    pub fn apply(&self, metadata: &Metadata, param: &str) -> Result<Metadata, StripeError> {
        let mut out = if self.clear { Metadata::new() } else { metadata.clone() };
        for (key, value) in &self.changes {
            match value {
                Some(v) => out.insert(key.clone(), v.clone()),
                None => out.remove(key),
            };
        }
        check_metadata_size(&out, param)?;
        Ok(out)
    }
}

fn check_metadata_size(metadata: &Metadata, param: &str) -> Result<(), StripeError> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(StripeError::invalid(
            "parameter_invalid",
            param,
            format!("Invalid {param}: at most {MAX_METADATA_KEYS} keys are allowed."),
        ));
    }
    Ok(())
}

fn invalid_body(message: String) -> StripeError {
    StripeError::InvalidRequest { code: None, param: None, message }
}

/// `a[b][]` → ["a", "b", ""].
fn split_key(key: &str) -> Result<Vec<String>, StripeError> {
    let bad = || invalid_body(format!("Invalid parameter name: {}", truncate(key, 80)));
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(bad());
    }
    let (head, mut rest) = key.split_at(key.find('[').unwrap_or(key.len()));
    if head.is_empty() {
        return Err(bad());
    }
    let mut segments = vec![head.to_string()];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').ok_or_else(bad)?;
        let close = inner.find(']').ok_or_else(bad)?;
        segments.push(inner[..close].to_string());
        rest = &inner[close + 1..];
        if segments.len() > MAX_DEPTH + 1 {
            return Err(bad());
        }
    }
    Ok(segments)
}

fn insert(map: &mut BTreeMap<String, Node>, segments: &[String], value: String) -> Result<(), &'static str> {
    let (key, rest) = segments.split_first().ok_or("empty name")?;
    if key.is_empty() {
        return Err("[] is only allowed after a name");
    }
    if rest.is_empty() {
        // A repeated scalar: the last one wins, as in Rack.
        return match map.get(key) {
            Some(Node::Map(_) | Node::List(_)) => Err("given both as a value and as a hash or array"),
            _ => {
                map.insert(key.clone(), Node::Value(value));
                Ok(())
            }
        };
    }
    if rest[0].is_empty() {
        let node = map.entry(key.clone()).or_insert_with(|| Node::List(Vec::new()));
        let Node::List(items) = node else {
            return Err("given both as an array and as a value or hash");
        };
        return append(items, &rest[1..], value);
    }
    let node = map.entry(key.clone()).or_insert_with(|| Node::Map(BTreeMap::new()));
    let Node::Map(child) = node else {
        return Err("given both as a hash and as a value or array");
    };
    insert(child, rest, value)
}

/// `a[]=v` appends; `a[][x]=1&a[][y]=2` fills the last item until a key repeats (Rack's rule).
fn append(items: &mut Vec<Node>, rest: &[String], value: String) -> Result<(), &'static str> {
    if items.len() >= MAX_LIST_ITEMS {
        return Err("too many items");
    }
    if rest.is_empty() {
        items.push(Node::Value(value));
        return Ok(());
    }
    let fill_last = matches!(items.last(), Some(Node::Map(m)) if !has_path(m, rest));
    if !fill_last {
        items.push(Node::Map(BTreeMap::new()));
    }
    match items.last_mut() {
        Some(Node::Map(m)) => insert(m, rest, value),
        _ => Err("mixed array items"),
    }
}

fn has_path(map: &BTreeMap<String, Node>, segments: &[String]) -> bool {
    match (segments.split_first(), segments.len()) {
        (Some((key, _)), 1) => map.contains_key(key),
        (Some((key, rest)), _) => match map.get(key) {
            Some(Node::Map(child)) => has_path(child, rest),
            Some(_) => true,
            None => false,
        },
        (None, _) => true,
    }
}

impl Params {
    /// The full name of `key` at this level: `line_items[0][quantity]`.
    pub fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_string() } else { format!("{}[{key}]", self.prefix) }
    }

    /// A string; an empty value means "unset", as on Stripe.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, StripeError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Node::Value(v)) if v.is_empty() => Ok(None),
            Some(Node::Value(v)) => Ok(Some(v.clone())),
            Some(_) => Err(StripeError::InvalidRequest {
                code: None,
                param: Some(self.name(key)),
                message: format!("Invalid string: {} must be a string, not a hash or array.", self.name(key)),
            }),
        }
    }

    pub fn req_str(&self, key: &str) -> Result<String, StripeError> {
        match self.map.get(key) {
            Some(Node::Value(v)) if v.is_empty() => {
                let name = self.name(key);
                Err(StripeError::invalid(
                    "parameter_invalid_empty",
                    &name,
                    format!(
                        "You passed an empty string for '{name}'. We assume empty values are an attempt to \
                         unset a parameter; however '{name}' cannot be unset. You should remove '{name}' \
                         from your request or supply a non-empty value."
                    ),
                ))
            }
            _ => self.opt_str(key)?.ok_or_else(|| StripeError::missing(&self.name(key))),
        }
    }

    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, StripeError> {
        let Some(raw) = self.opt_str(key)? else {
            return Ok(None);
        };
        let digits = raw.strip_prefix('-').unwrap_or(&raw);
        let parsed = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| raw.parse::<i64>().ok())
            .flatten();
        parsed.map(Some).ok_or_else(|| {
            StripeError::invalid(
                "parameter_invalid_integer",
                self.name(key),
                format!("Invalid integer: {}", truncate(&raw, 40)),
            )
        })
    }

    pub fn req_i64(&self, key: &str) -> Result<i64, StripeError> {
        self.opt_i64(key)?.ok_or_else(|| StripeError::missing(&self.name(key)))
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, StripeError> {
        match self.opt_str(key)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(StripeError::InvalidRequest {
                code: None,
                param: Some(self.name(key)),
                message: format!("Invalid boolean: {}", truncate(other, 40)),
            }),
        }
    }

    /// A required amount in minor units: a positive integer, at most [`MAX_AMOUNT_MINOR`].
    pub fn amount(&self, key: &str) -> Result<i64, StripeError> {
        let amount = self.req_i64(key)?;
        check_amount(amount, &self.name(key))
    }

    /// A required currency code, checked against ISO 4217; returned lower-case, as Stripe writes it.
    pub fn currency(&self, key: &str) -> Result<String, StripeError> {
        let raw = self.req_str(key)?;
        let currency = Currency::parse(&raw.to_uppercase()).map_err(|_| {
            StripeError::invalid(
                "parameter_invalid",
                self.name(key),
                format!("Invalid currency: {}.", truncate(&raw.to_lowercase(), 10)),
            )
        })?;
        Ok(currency.stripe_code())
    }

    /// A nested hash (`payment_intent_data[...]`), if given.
    pub fn child(&self, key: &str) -> Result<Option<Params>, StripeError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Node::Value(v)) if v.is_empty() => Ok(None),
            Some(Node::Map(map)) => Ok(Some(Params { prefix: self.name(key), map: map.clone() })),
            Some(_) => Err(self.invalid_object(key)),
        }
    }

    /// `metadata[k]=v` with Stripe's limits; an empty value unsets the key.
    pub fn metadata(&self, key: &str) -> Result<Metadata, StripeError> {
        let Some(child) = self.child(key)? else {
            return Ok(Metadata::new());
        };
        let mut out = Metadata::new();
        for k in child.map.keys() {
            if let Some(v) = child.metadata_value(k)? {
                out.insert(k.clone(), v);
            }
        }
        check_metadata_size(&out, &self.name(key))?;
        Ok(out)
    }

    fn metadata_error(&self, key: &str, why: &str) -> StripeError {
        StripeError::invalid("parameter_invalid", self.name(key), format!("Invalid metadata: {why}."))
    }

    /// Stripe's refusal of a parameter the route does not take: any key at
    /// this level other than `known` (and `expand`) is a 400
    /// `parameter_unknown` naming it.
    pub fn only(&self, known: &[&str]) -> Result<(), StripeError> {
        let unknown = self.map.keys().find(|k| !known.contains(&k.as_str()) && !ALWAYS_ACCEPTED.contains(&k.as_str()));
        match unknown {
            None => Ok(()),
            Some(key) => {
                let name = truncate(&self.name(key), 80);
                Err(StripeError::invalid("parameter_unknown", &name, format!("Received unknown parameter: {name}")))
            }
        }
    }

    /// Whether `key` was sent at all (an empty value included).
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// `metadata[k]=v` as an update of existing metadata (see [`MetadataPatch`]).
    pub fn metadata_patch(&self, key: &str) -> Result<MetadataPatch, StripeError> {
        if matches!(self.map.get(key), Some(Node::Value(v)) if v.is_empty()) {
            return Ok(MetadataPatch { clear: true, changes: BTreeMap::new() });
        }
        let Some(child) = self.child(key)? else {
            return Ok(MetadataPatch::default());
        };
        let mut changes = BTreeMap::new();
        for k in child.map.keys() {
            changes.insert(k.clone(), child.metadata_value(k)?);
        }
        Ok(MetadataPatch { clear: false, changes })
    }

    /// One metadata value within Stripe's limits; `None`: unset.
    fn metadata_value(&self, key: &str) -> Result<Option<String>, StripeError> {
        if key.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(self.metadata_error(key, "keys can be at most 40 characters"));
        }
        let value = self.opt_str(key)?;
        if value.as_ref().is_some_and(|v| v.chars().count() > MAX_METADATA_VALUE_CHARS) {
            return Err(self.metadata_error(key, "values can be at most 500 characters"));
        }
        Ok(value)
    }

    /// A list of hashes (`line_items[0][…]` or `line_items[][…]`), in index order.
    pub fn list(&self, key: &str) -> Result<Vec<Params>, StripeError> {
        let items = self.list_nodes(key)?;
        items
            .into_iter()
            .enumerate()
            .map(|(i, node)| match node {
                Node::Map(map) => Ok(Params { prefix: format!("{}[{i}]", self.name(key)), map }),
                _ => Err(self.invalid_object(&format!("{key}[{i}]"))),
            })
            .collect()
    }

    /// A list of strings (`enabled_events[]=…` or `enabled_events[0]=…`).
    pub fn str_list(&self, key: &str) -> Result<Vec<String>, StripeError> {
        let items = self.list_nodes(key)?;
        items
            .into_iter()
            .map(|node| match node {
                Node::Value(v) => Ok(v),
                _ => Err(self.invalid_array(key)),
            })
            .collect()
    }

    fn list_nodes(&self, key: &str) -> Result<Vec<Node>, StripeError> {
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(Node::Value(v)) if v.is_empty() => Ok(Vec::new()),
            Some(Node::List(items)) => Ok(items.clone()),
            Some(Node::Map(map)) => {
                let mut indexed = Vec::with_capacity(map.len());
                for (k, node) in map {
                    let index: usize = k.parse().map_err(|_| self.invalid_array(key))?;
                    indexed.push((index, node.clone()));
                }
                if indexed.len() > MAX_LIST_ITEMS {
                    return Err(self.invalid_array(key));
                }
                indexed.sort_by_key(|(i, _)| *i);
                Ok(indexed.into_iter().map(|(_, n)| n).collect())
            }
            Some(Node::Value(_)) => Err(self.invalid_array(key)),
        }
    }

    fn invalid_array(&self, key: &str) -> StripeError {
        StripeError::InvalidRequest {
            code: None,
            param: Some(self.name(key)),
            message: format!("Invalid array: {} (at most {MAX_LIST_ITEMS} items).", self.name(key)),
        }
    }

    fn invalid_object(&self, key: &str) -> StripeError {
        StripeError::InvalidRequest {
            code: None,
            param: Some(self.name(key)),
            message: format!("Invalid object: {} must be a hash.", self.name(key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(body: &str) -> Params {
        parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn reads_indexed_nested_lists() {
        let params = p("line_items[1][quantity]=2&line_items[0][price_data][unit_amount]=2500\
             &line_items[0][price_data][currency]=usd&line_items[0][quantity]=1&line_items[1][price_data][unit_amount]=5");
        let items = params.list("line_items").unwrap();
        assert_eq!(items.len(), 2);
        let price = items[0].child("price_data").unwrap().unwrap();
        assert_eq!(price.req_i64("unit_amount").unwrap(), 2500);
        assert_eq!(price.req_str("currency").unwrap(), "usd");
        assert_eq!(items[1].req_i64("quantity").unwrap(), 2);
        let err = items[1].child("price_data").unwrap().unwrap().req_str("currency").unwrap_err();
        assert!(matches!(err, StripeError::InvalidRequest { param: Some(ref n), code: Some("parameter_missing"), .. }
                if n == "line_items[1][price_data][currency]"));
    }

    #[test]
    fn reads_rack_style_lists() {
        let params = p("line_items[][price_data][currency]=usd&line_items[][price_data][unit_amount]=1\
             &line_items[][quantity]=1&line_items[][price_data][currency]=eur&line_items[][quantity]=3\
             &enabled_events[]=a&enabled_events[]=b");
        let items = params.list("line_items").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].req_i64("quantity").unwrap(), 3);
        assert_eq!(params.str_list("enabled_events").unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn metadata_and_empties() {
        let params = p("metadata[order_id]=o1&metadata[gone]=&payment_intent_data[metadata][k]=v&description=");
        let md = params.metadata("metadata").unwrap();
        assert_eq!(md.len(), 1);
        assert_eq!(md["order_id"], "o1");
        let pid = params.child("payment_intent_data").unwrap().unwrap();
        assert_eq!(pid.metadata("metadata").unwrap()["k"], "v");
        assert_eq!(params.opt_str("description").unwrap(), None);
        assert!(matches!(
            params.req_str("description"),
            Err(StripeError::InvalidRequest { code: Some("parameter_invalid_empty"), .. })
        ));
    }

    #[test]
    fn strict_types() {
        let params = p("amount=12a&confirm=yes&big=99999999999999999999&neg=-5&plus=+5");
        for key in ["amount", "big", "plus"] {
            assert!(matches!(
                params.opt_i64(key),
                Err(StripeError::InvalidRequest { code: Some("parameter_invalid_integer"), .. })
            ));
        }
        assert_eq!(params.opt_i64("neg").unwrap(), Some(-5));
        assert!(params.opt_bool("confirm").is_err());
        assert!(parse(b"a=1&a[b]=2").is_err());
        assert!(parse(b"a[b=1").is_err());
        assert!(parse(b"[a]=1").is_err());
        assert!(parse(b"a[b][c][d][e][f][g][h]=1").is_err());
    }

    #[test]
    fn routes_that_name_their_parameters_refuse_others() {
        let params = p("amount_to_capture=5&expand[]=latest_charge&metadata[k]=v");
        assert!(params.only(&["amount_to_capture", "metadata"]).is_ok());
        let err = params.only(&["metadata"]).unwrap_err();
        assert!(matches!(err, StripeError::InvalidRequest { code: Some("parameter_unknown"), param: Some(ref n), .. }
                if n == "amount_to_capture"));
        let evidence = p("evidence[customer_name]=x").child("evidence").unwrap().unwrap();
        let err = evidence.only(&["uncategorized_text"]).unwrap_err();
        assert!(
            matches!(err, StripeError::InvalidRequest { param: Some(ref n), .. } if n == "evidence[customer_name]")
        );
        assert!(p("a=").has("a") && !p("a=").has("b"));
    }

    #[test]
    fn metadata_patches_merge_unset_and_clear() {
        let old: Metadata = [("keep", "1"), ("gone", "2"), ("change", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let patched = p("metadata[gone]=&metadata[change]=4&metadata[new]=5")
            .metadata_patch("metadata")
            .unwrap()
            .apply(&old, "metadata")
            .unwrap();
        let expected: Vec<(&str, &str)> = vec![("change", "4"), ("keep", "1"), ("new", "5")];
        assert_eq!(patched.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(), expected);
        assert!(p("metadata=").metadata_patch("metadata").unwrap().apply(&old, "metadata").unwrap().is_empty());
        assert_eq!(p("x=1").metadata_patch("metadata").unwrap().apply(&old, "metadata").unwrap(), old);
        let many: Vec<String> = (0..MAX_METADATA_KEYS).map(|i| format!("metadata[k{i}]=v")).collect();
        let too_many = p(&many.join("&")).metadata_patch("metadata").unwrap();
        assert!(too_many.apply(&old, "metadata").is_err(), "50 new keys beside 3 old ones");
    }

    #[test]
    fn list_limits() {
        let many: Vec<String> = (0..=MAX_LIST_ITEMS).map(|i| format!("e[]={i}")).collect();
        assert!(parse(many.join("&").as_bytes()).is_err());
        assert!(p("e[x]=1").str_list("e").is_err());
    }
}
