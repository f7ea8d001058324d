//! The dashboard's pages (GET): each parses its query, loads one read
//! model from `admin::views` off the executor, and renders its template.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::admin::actions::{self, ActionView};
use crate::admin::format;
use crate::admin::views::disputes::{self as dispute_views, DisputesPage, Scope};
use crate::admin::views::ledger::{AccountPage, LedgerPage};
use crate::admin::views::lists::{self, PayoutList, RefundList};
use crate::admin::views::ops::{AlertsPage, JobsPage};
use crate::admin::views::overview::Overview;
use crate::admin::views::payments::{self as payment_views, Filter, PaymentDetail, PaymentList, Search};
use crate::admin::views::sellers::{SellerList, SellerPage};
use crate::admin::views::{self, ledger, ops, overview, sellers};
use crate::context::Ctx;
use crate::db::Tx;
use crate::http::admin::auth::Staff;
use crate::http::admin::errors::AdminError;
use crate::payments::model::OrderStatus;

const NAV: [(&str, &str, &str); 11] = [
    ("overview", "Overview", "/admin"),
    ("payments", "Payments", "/admin/payments"),
    ("sellers", "Sellers", "/admin/sellers"),
    ("ledger", "Ledger", "/admin/ledger"),
    ("refunds", "Refunds", "/admin/refunds"),
    ("disputes", "Disputes", "/admin/disputes"),
    ("payouts", "Payouts", "/admin/payouts"),
    ("reconciliation", "Reconciliation", "/admin/reconciliation"),
    ("webhooks", "Webhooks", "/admin/webhooks"),
    ("alerts", "Alerts", "/admin/alerts"),
    ("jobs", "Jobs", "/admin/jobs"),
];

/// What every page shows around its content.
pub struct Layout {
    pub email: String,
    pub csrf: String,
    pub nav: &'static str,
    pub flash: Option<Flash>,
}

impl Layout {
    fn new(staff: &Staff, nav: &'static str, flash: Option<Flash>) -> Layout {
        Layout { email: staff.email().to_string(), csrf: staff.session.csrf_token.clone(), nav, flash }
    }

    /// The menu: (label, link, is this page).
    pub fn nav_items(&self) -> Vec<(&'static str, &'static str, bool)> {
        NAV.iter().map(|(id, label, href)| (*label, *href, *id == self.nav)).collect()
    }

    /// A fresh idempotency key for one form.
    pub fn key(&self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    pub fn status_class(&self, status: &str) -> String {
        views::status_class(status)
    }

    pub fn short(&self, id: &str) -> String {
        format::short_id(id)
    }
}

/// The outcome of the action the staff member just took (`?action=ID`).
pub struct Flash {
    pub kind: &'static str,
    pub message: String,
    pub meta: String,
}

impl From<ActionView> for Flash {
    fn from(a: ActionView) -> Flash {
        let kind = match a.status.as_str() {
            "done" => "ok",
            "failed" => "error",
            _ => "info",
        };
        let message = match a.status.as_str() {
            "running" => {
                "This action is still running or was interrupted. Check its result before trying again.".into()
            }
            _ => a.message.unwrap_or_default(),
        };
        let meta = format!("{} · {} · {}", a.action.replace('_', " "), a.staff_email, format::time(&a.created_at));
        Flash { kind, message, meta }
    }
}

#[derive(Deserialize)]
pub struct FlashQuery {
    action: Option<i64>,
}

/// Loads the flash and one page's read model in one trip to the database.
async fn load<T, F>(ctx: &Ctx, action: Option<i64>, f: F) -> Result<(Option<Flash>, T), AdminError>
where
    T: Send + 'static,
    F: FnOnce(&Tx) -> anyhow::Result<T> + Send + 'static,
{
    let loaded = ctx
        .db
        .run(move |tx| -> anyhow::Result<_> {
            let flash = match action {
                Some(id) => actions::load(tx, id)?.map(Flash::from),
                None => None,
            };
            Ok((flash, f(tx)?))
        })
        .await?;
    Ok(loaded)
}

pub fn html<T: Template>(page: &T) -> Result<HttpResponse, AdminError> {
    let body = page.render().map_err(anyhow::Error::from)?;
    Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").body(body))
}

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct OverviewPage {
    layout: Layout,
    o: Overview,
}

pub async fn overview(
    ctx: web::Data<Ctx>,
    staff: Staff,
    q: web::Query<FlashQuery>,
) -> Result<HttpResponse, AdminError> {
    let minutes = ctx.settings.alerts.unfinished_after_minutes;
    let (flash, o) = load(&ctx, q.action, move |tx| overview::load(tx, minutes)).await?;
    html(&OverviewPage { layout: Layout::new(&staff, "overview", flash), o })
}

#[derive(Deserialize)]
pub struct PaymentsQuery {
    q: Option<String>,
    status: Option<String>,
    before: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/payments.html")]
struct PaymentsPage {
    layout: Layout,
    q: String,
    status: String,
    statuses: [OrderStatus; 5],
    list: PaymentList,
    /// The query string of the filters, for the pagination links.
    filters: String,
    paged: bool,
}

pub async fn payments(
    ctx: web::Data<Ctx>,
    staff: Staff,
    q: web::Query<PaymentsQuery>,
) -> Result<HttpResponse, AdminError> {
    let q = q.into_inner();
    let status = q.status.as_deref().filter(|s| !s.is_empty());
    let parsed_status = match status {
        Some(s) => Some(OrderStatus::parse(s).ok_or_else(|| AdminError::BadRequest(format!("'{s}' is not a status")))?),
        None => None,
    };
    let filter = Filter {
        search: q.q.as_deref().and_then(Search::parse),
        status: parsed_status,
        before: q.before.clone(),
        limit: payment_views::PAGE_SIZE,
    };
    let (_, list) = load(&ctx, None, move |tx| payment_views::list(tx, &filter)).await?;
    let query = q.q.unwrap_or_default();
    let filters = serde_urlencoded::to_string([("q", query.as_str()), ("status", status.unwrap_or(""))])
        .map_err(anyhow::Error::from)?;
    html(&PaymentsPage {
        layout: Layout::new(&staff, "payments", None),
        status: status.unwrap_or("").to_string(),
        q: query,
        statuses: OrderStatus::ALL,
        list,
        filters,
        paged: q.before.is_some(),
    })
}

#[derive(Template)]
#[template(path = "admin/payment.html")]
struct PaymentPage {
    layout: Layout,
    p: PaymentDetail,
}

impl PaymentPage {
    fn journal_rows(&self) -> &[views::JournalRow] {
        &self.p.ledger
    }
}

/// `/admin/payments/{id}`: a checkout's page; an order's id leads to its checkout.
pub async fn payment(
    ctx: web::Data<Ctx>,
    staff: Staff,
    path: web::Path<String>,
    q: web::Query<FlashQuery>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let lookup = id.clone();
    let (flash, found) = load(&ctx, q.action, move |tx| {
        let Some(checkout) = payment_views::checkout_of(tx, &lookup)? else { return Ok(Err(None)) };
        if checkout != lookup {
            return Ok(Err(Some(checkout)));
        }
        Ok(payment_views::detail(tx, &checkout)?.ok_or(None))
    })
    .await?;
    match found {
        Ok(p) => html(&PaymentPage { layout: Layout::new(&staff, "payments", flash), p }),
        Err(Some(checkout)) => Ok(HttpResponse::SeeOther()
            .insert_header(("Location", format!("/admin/payments/{checkout}#order-{id}")))
            .finish()),
        Err(None) => Err(AdminError::NotFound(format!("No payment has the id '{id}'."))),
    }
}

#[derive(Deserialize)]
pub struct AfterQuery {
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/sellers.html")]
struct SellersPage {
    layout: Layout,
    list: SellerList,
    hold_days: i64,
}

pub async fn sellers(ctx: web::Data<Ctx>, staff: Staff, q: web::Query<AfterQuery>) -> Result<HttpResponse, AdminError> {
    let hold_days = ctx.settings.payouts.hold_days;
    let after = q.into_inner().after;
    let (_, list) = load(&ctx, None, move |tx| sellers::list(tx, after.as_deref(), hold_days)).await?;
    html(&SellersPage { layout: Layout::new(&staff, "sellers", None), list, hold_days })
}

#[derive(Template)]
#[template(path = "admin/seller.html")]
struct SellerDetailPage {
    layout: Layout,
    s: SellerPage,
    hold_days: i64,
}

pub async fn seller(
    ctx: web::Data<Ctx>,
    staff: Staff,
    path: web::Path<String>,
    q: web::Query<FlashQuery>,
) -> Result<HttpResponse, AdminError> {
    let hold_days = ctx.settings.payouts.hold_days;
    let id = path.into_inner();
    let lookup = id.clone();
    let (flash, s) = load(&ctx, q.action, move |tx| sellers::page(tx, &lookup, hold_days)).await?;
    let s = s.ok_or_else(|| AdminError::NotFound(format!("No seller has the id '{id}'.")))?;
    html(&SellerDetailPage { layout: Layout::new(&staff, "sellers", flash), s, hold_days })
}

#[derive(Deserialize)]
pub struct BeforeQuery {
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "admin/ledger.html")]
struct LedgerTemplate {
    layout: Layout,
    l: LedgerPage,
    paged: bool,
}

impl LedgerTemplate {
    fn journal_rows(&self) -> &[views::JournalRow] {
        &self.l.journal
    }
}

pub async fn ledger(ctx: web::Data<Ctx>, staff: Staff, q: web::Query<BeforeQuery>) -> Result<HttpResponse, AdminError> {
    let before = q.before;
    let (_, l) = load(&ctx, None, move |tx| ledger::page(tx, before)).await?;
    html(&LedgerTemplate { layout: Layout::new(&staff, "ledger", None), l, paged: before.is_some() })
}

#[derive(Template)]
#[template(path = "admin/account.html")]
struct AccountTemplate {
    layout: Layout,
    a: AccountPage,
}

pub async fn account(
    ctx: web::Data<Ctx>,
    staff: Staff,
    path: web::Path<i64>,
    q: web::Query<BeforeQuery>,
) -> Result<HttpResponse, AdminError> {
    let (id, before) = (path.into_inner(), q.before);
    let (_, a) = load(&ctx, None, move |tx| ledger::account(tx, id, before)).await?;
    let a = a.ok_or_else(|| AdminError::NotFound(format!("No ledger account has the id {id}.")))?;
    html(&AccountTemplate { layout: Layout::new(&staff, "ledger", None), a })
}

#[derive(Deserialize)]
pub struct StatusQuery {
    status: Option<String>,
    before: Option<String>,
    after: Option<String>,
}

fn status_filter(status: &Option<String>, allowed: &[&str]) -> Result<Option<String>, AdminError> {
    match status.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if allowed.contains(&s) => Ok(Some(s.to_string())),
        Some(s) => Err(AdminError::BadRequest(format!("'{s}' is not a status"))),
    }
}

#[derive(Template)]
#[template(path = "admin/refunds.html")]
struct RefundsPage {
    layout: Layout,
    status: String,
    statuses: [&'static str; 3],
    list: RefundList,
    paged: bool,
}

pub async fn refunds(
    ctx: web::Data<Ctx>,
    staff: Staff,
    q: web::Query<StatusQuery>,
) -> Result<HttpResponse, AdminError> {
    let status = status_filter(&q.status, &lists::REFUND_STATUSES)?;
    let (filter, before) = (status.clone(), q.before.clone());
    let paged = before.is_some();
    let (_, list) = load(&ctx, None, move |tx| lists::refunds(tx, filter.as_deref(), before.as_deref())).await?;
    html(&RefundsPage {
        layout: Layout::new(&staff, "refunds", None),
        status: status.unwrap_or_default(),
        statuses: lists::REFUND_STATUSES,
        list,
        paged,
    })
}

#[derive(Deserialize)]
pub struct DisputesQuery {
    action: Option<i64>,
    after: Option<String>,
    order: Option<String>,
    seller: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/disputes.html")]
struct DisputesTemplate {
    layout: Layout,
    d: DisputesPage,
    scope: Scope,
    /// The first page of this scope, and the next one when more follow.
    first_link: String,
    next_link: Option<String>,
    paged: bool,
    max_evidence_chars: usize,
    max_evidence_label: String,
}

/// `/admin/disputes`: all disputes, or one order's (`?order=`) or one seller's (`?seller=`).
pub async fn disputes(
    ctx: web::Data<Ctx>,
    staff: Staff,
    q: web::Query<DisputesQuery>,
) -> Result<HttpResponse, AdminError> {
    let q = q.into_inner();
    let given = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let scope = Scope { payment_order_id: given(q.order), seller_id: given(q.seller) };
    let scope_query = serde_urlencoded::to_string(
        [("order", scope.payment_order_id.as_deref()), ("seller", scope.seller_id.as_deref())]
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect::<Vec<_>>(),
    )
    .map_err(anyhow::Error::from)?;
    let (filter, after) = (scope.clone(), q.after.clone());
    let (flash, d) = load(&ctx, q.action, move |tx| dispute_views::page(tx, &filter, after.as_deref())).await?;
    let link = |extra: Option<String>| {
        let parts: Vec<String> =
            [Some(scope_query.clone()).filter(|s| !s.is_empty()), extra].into_iter().flatten().collect();
        if parts.is_empty() { "/admin/disputes".to_string() } else { format!("/admin/disputes?{}", parts.join("&")) }
    };
    let next_link =
        d.next_after.as_deref().map(|id| link(Some(format!("after={}", crate::http::admin::errors::urlencode(id)))));
    html(&DisputesTemplate {
        layout: Layout::new(&staff, "disputes", flash),
        first_link: link(None),
        next_link,
        paged: q.after.is_some(),
        d,
        scope,
        max_evidence_chars: crate::disputes::MAX_EVIDENCE_CHARS,
        max_evidence_label: format::count(crate::disputes::MAX_EVIDENCE_CHARS),
    })
}

#[derive(Template)]
#[template(path = "admin/payouts.html")]
struct PayoutsPage {
    layout: Layout,
    status: String,
    statuses: [&'static str; 4],
    list: PayoutList,
    paged: bool,
}

pub async fn payouts(
    ctx: web::Data<Ctx>,
    staff: Staff,
    q: web::Query<StatusQuery>,
) -> Result<HttpResponse, AdminError> {
    let status = status_filter(&q.status, &lists::PAYOUT_STATUSES)?;
    let (filter, after) = (status.clone(), q.after.clone());
    let paged = after.is_some();
    let (_, list) = load(&ctx, None, move |tx| lists::payouts(tx, filter.as_deref(), after)).await?;
    html(&PayoutsPage {
        layout: Layout::new(&staff, "payouts", None),
        status: status.unwrap_or_default(),
        statuses: lists::PAYOUT_STATUSES,
        list,
        paged,
    })
}

#[derive(Template)]
#[template(path = "admin/alerts.html")]
struct AlertsTemplate {
    layout: Layout,
    a: AlertsPage,
}

pub async fn alerts(ctx: web::Data<Ctx>, staff: Staff, q: web::Query<FlashQuery>) -> Result<HttpResponse, AdminError> {
    let (flash, a) = load(&ctx, q.action, ops::alerts_page).await?;
    html(&AlertsTemplate { layout: Layout::new(&staff, "alerts", flash), a })
}

#[derive(Template)]
#[template(path = "admin/webhooks.html")]
struct WebhooksTemplate {
    layout: Layout,
    w: crate::admin::views::webhooks::WebhooksPage,
}

pub async fn webhooks(
    ctx: web::Data<Ctx>,
    staff: Staff,
    q: web::Query<FlashQuery>,
) -> Result<HttpResponse, AdminError> {
    let (flash, w) = load(&ctx, q.action, crate::admin::views::webhooks::webhooks_page).await?;
    html(&WebhooksTemplate { layout: Layout::new(&staff, "webhooks", flash), w })
}

#[derive(Template)]
#[template(path = "admin/jobs.html")]
struct JobsTemplate {
    layout: Layout,
    j: JobsPage,
}

pub async fn jobs(ctx: web::Data<Ctx>, staff: Staff, q: web::Query<FlashQuery>) -> Result<HttpResponse, AdminError> {
    let (flash, j) = load(&ctx, q.action, ops::jobs_page).await?;
    html(&JobsTemplate { layout: Layout::new(&staff, "jobs", flash), j })
}

#[derive(Template)]
#[template(path = "admin/reconciliation.html")]
struct ReconciliationTemplate {
    layout: Layout,
    r: views::reconciliation::ReconciliationPage,
    max_file_mb: usize,
}

pub async fn reconciliation(
    ctx: web::Data<Ctx>,
    staff: Staff,
    q: web::Query<FlashQuery>,
) -> Result<HttpResponse, AdminError> {
    let (flash, r) = load(&ctx, q.action, views::reconciliation::page).await?;
    let max_file_mb = ctx.settings.reconciliation.max_file_bytes.div_ceil(1024 * 1024);
    html(&ReconciliationTemplate { layout: Layout::new(&staff, "reconciliation", flash), r, max_file_mb })
}

#[derive(Template)]
#[template(path = "admin/not_found.html")]
struct NotFoundPage {
    layout: Layout,
}

/// Any other `/admin/…` path: sign in first, then a 404 inside the layout.
/// No page here: 405 when the path is a page that takes other methods (a
/// form's address opened in the browser, say), 404 otherwise.
pub async fn not_found(req: actix_web::HttpRequest, staff: Staff) -> Result<HttpResponse, AdminError> {
    if req.resource_map().has_resource(req.path()) {
        let message = format!("{} does not take {}", req.path(), req.method());
        let page = crate::http::admin::errors::ErrorPage { status: 405, title: "Method not allowed", message };
        let body = page.render().map_err(anyhow::Error::from)?;
        return Ok(HttpResponse::MethodNotAllowed().content_type("text/html; charset=utf-8").body(body));
    }
    let body = NotFoundPage { layout: Layout::new(&staff, "", None) }.render().map_err(anyhow::Error::from)?;
    Ok(HttpResponse::NotFound().content_type("text/html; charset=utf-8").body(body))
}
