//! `/v1/reconciliation`: upload a settlement file, list runs, and work the
//! exception queue (list, resolve with a note).

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::context::Ctx;
use crate::http::api::body;
use crate::http::auth::ApiKey;
use crate::http::errors::{ApiError, ErrorBody};
use crate::http::idempotency;
use crate::payments::store::Page;
use crate::reconciliation::store::{self, ExceptionView, RunView};
use crate::reconciliation::{self, ImportError, ResolveError, RunSummary, Source};

pub(crate) const MAX_NOTE_CHARS: usize = 2_000;
pub(crate) const MAX_NAME_CHARS: usize = 255;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name, as the run list shows it.
    name: Option<String>,
}

#[utoipa::path(
    request_body(content = String, content_type = "text/csv",
                 description = "The PSP's settlement file (itemized payout reconciliation columns)"),
    params(UploadQuery, ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses(
        (status = 201, description = "Imported and reconciled", body = RunSummary),
        (status = 200, description = "This exact file was imported before: nothing changed", body = RunSummary),
        (status = 400, description = "A line does not parse; the message names its line and column", body = ErrorBody),
        (status = 413, description = "Larger than reconciliation.max_file_bytes", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/reconciliation/files")]
pub async fn upload_settlement_file(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    query: web::Query<UploadQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let bytes =
        body::read(&req, payload, body::Limits { limit_bytes: ctx.settings.reconciliation.max_file_bytes }).await?;
    let name = query.into_inner().name.unwrap_or_else(|| "upload".into());
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("parameter_invalid", "name must be 1 to 255 printable characters", "name"));
    }
    idempotency::run(&ctx, &key.0, &req, &bytes, || async {
        let summary = reconciliation::import_file(&ctx, bytes.to_vec(), name, Source::Upload, None)
            .await
            .map_err(import_error)?;
        Ok(if summary.already_imported {
            HttpResponse::Ok().json(summary)
        } else {
            HttpResponse::Created().json(summary)
        })
    })
    .await
}

fn import_error(e: ImportError) -> ApiError {
    match e {
        ImportError::Invalid(parse) => {
            let message = format!("the settlement file was refused: {parse}");
            match &parse.column {
                Some((_, column)) => ApiError::invalid("settlement_file_invalid", message, column.clone()),
                None => ApiError::bad_request("settlement_file_invalid", message),
            }
        }
        ImportError::Psp(e) => ApiError::internal(&anyhow::anyhow!(e)),
        ImportError::Internal(e) => ApiError::internal(&e),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    limit: Option<u32>,
    /// A run id: the page starts with the next older run.
    starting_after: Option<i64>,
}

#[utoipa::path(
    params(RunsQuery),
    responses((status = 200, body = Page<RunView>), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/reconciliation/runs")]
pub async fn list_runs(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    query: web::Query<RunsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = parse_limit(q.limit)?;
    let (data, has_more) = ctx.db.run(move |tx| store::list_runs(tx, q.starting_after, limit)).await?;
    Ok(HttpResponse::Ok().json(Page { object: "list", data, has_more }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExceptionsQuery {
    /// open (default), resolved, or all.
    status: Option<String>,
    limit: Option<u32>,
    /// An exception id: the page starts with the next older one.
    starting_after: Option<i64>,
}

#[utoipa::path(
    params(ExceptionsQuery),
    responses((status = 200, body = Page<ExceptionView>), (status = 400, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/reconciliation/exceptions")]
pub async fn list_exceptions(
    ctx: web::Data<Ctx>,
    _key: ApiKey,
    query: web::Query<ExceptionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let status = match q.status.as_deref().unwrap_or("open") {
        "all" => None,
        s @ ("open" | "resolved") => Some(s.to_string()),
        other => {
            return Err(ApiError::invalid(
                "parameter_invalid",
                format!("status '{other}' is not one of open, resolved, all"),
                "status",
            ));
        }
    };
    let limit = parse_limit(q.limit)?;
    let (data, has_more) =
        ctx.db.run(move |tx| store::list_exceptions(tx, status.as_deref(), q.starting_after, limit)).await?;
    Ok(HttpResponse::Ok().json(Page { object: "list", data, has_more }))
}

fn parse_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("parameter_invalid", "limit must be between 1 and 100", "limit"));
    }
    Ok(limit)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ResolveExceptionRequest)]
pub struct ResolveBody {
    /// Why it is settled: what was checked, what was corrected.
    note: String,
}

#[utoipa::path(
    request_body = ResolveBody,
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored answer for 24 h")),
    responses(
        (status = 200, description = "Resolved", body = ExceptionView),
        (status = 400, description = "No note, or the exception is not open", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/reconciliation/exceptions/{id}/resolve")]
pub async fn resolve_exception(
    ctx: web::Data<Ctx>,
    key: ApiKey,
    req: HttpRequest,
    path: web::Path<i64>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (ctx, key) = (&ctx, &key);
    body::idempotent_json(ctx, &key.0, &req, payload, |b: ResolveBody| async move {
        let note = b.note.trim().to_string();
        if note.is_empty() || note.chars().count() > MAX_NOTE_CHARS {
            return Err(ApiError::invalid(
                "parameter_invalid",
                format!("note must be 1 to {MAX_NOTE_CHARS} characters"),
                "note",
            ));
        }
        let by = format!("api_key:{}", key.0);
        let view = reconciliation::resolve_exception(ctx, id, note, by).await.map_err(|e| match e {
            ResolveError::NotFound(_) => ApiError::not_found("reconciliation exception", &id.to_string()),
            ResolveError::NotOpen(_) => ApiError::bad_request("exception_not_open", e.to_string()),
            ResolveError::Internal(e) => ApiError::internal(&e),
        })?;
        Ok(HttpResponse::Ok().json(view))
    })
    .await
}
