//! `/admin/webhooks`: the shop's webhook endpoints with their health (last
//! success, failures in a row) and each one's latest deliveries with their
//! attempts, read through the events module's own query functions.

use crate::admin::format;
use crate::db::Tx;
use crate::events::{self, DeliveryView, EndpointView};

/// Deliveries shown per endpoint (its latest).
pub const DELIVERIES_SHOWN: u32 = 20;

pub struct EndpointRow {
    pub endpoint: EndpointView,
    pub last_success_at: String,
    pub last_failure_at: String,
    pub deliveries: Vec<DeliveryRow>,
}

pub struct DeliveryRow {
    pub delivery: DeliveryView,
    pub created_at: String,
    pub next_attempt_at: String,
    /// Each attempt: time, HTTP status, latency, error.
    pub attempts: Vec<(String, String, String, String)>,
}

pub struct WebhooksPage {
    pub endpoints: Vec<EndpointRow>,
}

fn delivery_row(d: DeliveryView) -> DeliveryRow {
    let attempts = d
        .attempts
        .iter()
        .map(|a| {
            let status = a.http_status.map_or_else(|| "—".to_string(), |s| s.to_string());
            (format::time(&a.attempted_at), status, format!("{} ms", a.latency_ms), a.error.clone().unwrap_or_default())
        })
        .collect();
    DeliveryRow {
        created_at: format::time(&d.created_at),
        next_attempt_at: d.next_attempt_at_ms.map(format::time_ms).unwrap_or_default(),
        attempts,
        delivery: d,
    }
}

pub fn webhooks_page(tx: &Tx) -> anyhow::Result<WebhooksPage> {
    let mut endpoints = Vec::new();
    for endpoint in events::list_endpoints(tx)? {
        let (deliveries, _) = events::deliveries::list_deliveries(tx, &endpoint.id, None, DELIVERIES_SHOWN)?;
        endpoints.push(EndpointRow {
            last_success_at: endpoint.health.last_success_at.as_deref().map(format::time).unwrap_or_default(),
            last_failure_at: endpoint.health.last_failure_at.as_deref().map(format::time).unwrap_or_default(),
            deliveries: deliveries.into_iter().map(delivery_row).collect(),
            endpoint,
        });
    }
    Ok(WebhooksPage { endpoints })
}
