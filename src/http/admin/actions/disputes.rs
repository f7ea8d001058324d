//! `POST /admin/disputes/{id}/evidence` and `/accept`: the shop's one answer
//! to a dispute, through `disputes::answer`, as the API gives it.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{Done, Form, KeyForm, Outcome, Refusal, perform};
use crate::context::Ctx;
use crate::disputes::{self, Answer, DisputeError, DisputeView};
use crate::http::admin::auth::Posted;
use crate::http::admin::errors::AdminError;

/// Where an answer's outcome is shown.
const BACK: &str = "/admin/disputes";

/// A 404 for a dispute that does not exist, before anything is recorded.
async fn existing(ctx: &Ctx, dispute_id: &str) -> Result<(), AdminError> {
    match disputes::get(ctx, dispute_id).await? {
        Some(_) => Ok(()),
        None => Err(AdminError::NotFound(format!("No dispute has the id '{dispute_id}'."))),
    }
}

#[derive(Deserialize)]
pub struct EvidenceForm {
    key: String,
    #[serde(default)]
    text: String,
}

/// `POST /admin/disputes/{id}/evidence`: the shop's evidence, sent to the PSP.
pub async fn evidence(
    ctx: web::Data<Ctx>,
    path: web::Path<String>,
    posted: Posted<EvidenceForm>,
) -> Result<HttpResponse, AdminError> {
    let (staff, f, dispute_id) = (posted.staff, posted.form, path.into_inner());
    existing(&ctx, &dispute_id).await?;
    let fields = [("text", f.text.as_str())];
    let subject = dispute_id.clone();
    let form =
        Form { staff: &staff, key: &f.key, action: "dispute_evidence", subject, fields: &fields, back: BACK.into() };
    perform(&ctx, form, async {
        let answer = disputes::parse_evidence(&f.text).map_err(refusal)?;
        answered(disputes::answer(&ctx, &dispute_id, answer).await, "evidence", |d| {
            format!(
                "Evidence sent to the PSP for dispute {} ({}); the dispute is {}. The PSP decides; this page shows \
                 the outcome when it comes.",
                d.dispute_id,
                d.psp_dispute_id,
                d.status.as_str().replace('_', " ")
            )
        })
    })
    .await
}

/// `POST /admin/disputes/{id}/accept`: the shop gives the dispute up.
pub async fn accept(
    ctx: web::Data<Ctx>,
    path: web::Path<String>,
    posted: Posted<KeyForm>,
) -> Result<HttpResponse, AdminError> {
    let (staff, f, dispute_id) = (posted.staff, posted.form, path.into_inner());
    existing(&ctx, &dispute_id).await?;
    let subject = dispute_id.clone();
    let form = Form { staff: &staff, key: &f.key, action: "dispute_accept", subject, fields: &[], back: BACK.into() };
    perform(&ctx, form, async {
        answered(disputes::answer(&ctx, &dispute_id, Answer::Accept).await, "acceptance", |d| {
            format!(
                "Dispute {} accepted: the cardholder keeps the {} {}; the dispute is {}.",
                d.dispute_id,
                d.amount,
                d.currency,
                d.status.as_str().replace('_', " ")
            )
        })
    })
    .await
}

/// How an answer ended, in the staff member's words. An answer the PSP did
/// not take in time is recorded and sent again by its job: done, and said so.
fn answered(
    result: Result<DisputeView, DisputeError>,
    what: &str,
    done: impl FnOnce(&DisputeView) -> String,
) -> Outcome {
    match result {
        Ok(d) => Ok(Done::new(Some(d.dispute_id.clone()), done(&d))),
        Err(DisputeError::PspUnavailable(why)) => Ok(Done::new(
            None,
            format!(
                "The {what} is recorded, but the PSP did not answer ({why}); till sends it again shortly. Check \
                 the dispute's status in a minute."
            ),
        )),
        Err(DisputeError::Psp(why)) => Err(Refusal::Refused(format!("The PSP refused the {what}: {why}."))),
        Err(e) => Err(refusal(e)),
    }
}

/// A refusal of the core, or an internal error.
fn refusal(e: DisputeError) -> Refusal {
    match e {
        DisputeError::Internal(e) => Refusal::Internal(e),
        DisputeError::BadEvidence(why) => Refusal::Refused(format!("Nothing was sent: the evidence {why}.")),
        DisputeError::NotFound(id) => Refusal::Refused(format!("There is no dispute {id}.")),
        e => Refusal::Refused(format!("Nothing was sent: {}.", e.to_string().trim_end_matches('.'))),
    }
}
