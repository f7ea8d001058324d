//! How the dashboard answers when a page cannot be shown: anonymous
//! visitors are sent to sign in, everything else is a small HTML page.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Not signed in (or the session ended): to the login page, then back.
    #[error("sign in first")]
    SignIn { next: String },
    #[error("{0}")]
    BadRequest(String),
    /// A POST without the session's CSRF token.
    #[error("this form has expired or did not come from this dashboard; go back, reload the page and try again")]
    Csrf,
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[derive(Template)]
#[template(path = "admin/error.html")]
pub struct ErrorPage<'a> {
    pub status: u16,
    pub title: &'a str,
    pub message: String,
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::SignIn { .. } => StatusCode::SEE_OTHER,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Csrf => StatusCode::FORBIDDEN,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Internal(e) if crate::db::is_storage_trouble(e) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, message) = match self {
            AdminError::SignIn { next } => {
                let location = format!("/admin/login?next={}", urlencode(next));
                return HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish();
            }
            AdminError::BadRequest(m) => ("This request cannot be done", m.clone()),
            AdminError::Csrf => ("This form has expired", self.to_string()),
            AdminError::NotFound(m) => ("Not found", m.clone()),
            AdminError::Internal(e) if crate::db::is_storage_trouble(e) => (
                "Storage unavailable",
                "till cannot store anything now: its storage is full or failing. Nothing was done; try again \
                 once an operator has made room (see the alerts)."
                    .to_string(),
            ),
            AdminError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "admin page failed");
                ("Something went wrong", "An internal error occurred; it has been logged.".to_string())
            }
        };
        let status = self.status_code();
        let page = ErrorPage { status: status.as_u16(), title, message };
        let html = page.render().unwrap_or_else(|_| "error".into());
        HttpResponse::build(status).content_type("text/html; charset=utf-8").body(html)
    }
}

/// Percent-encodes a query parameter's value.
pub fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).map(|e| e[1..].to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn urlencodes_values() {
        assert_eq!(super::urlencode("/admin/payments?q=a b&status=x"), "%2Fadmin%2Fpayments%3Fq%3Da+b%26status%3Dx");
    }
}
