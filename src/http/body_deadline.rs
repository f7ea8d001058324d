//! Every request body must arrive whole within `server.body_timeout_ms` of
//! the request's start (issue 13: a body that trickles in forever holds a
//! connection and a worker's buffer). One middleware wraps the payload of
//! every request (merchant API, PSP webhooks, dashboard forms and uploads)
//! in a stream that ends with a `TimedOut` error at the deadline; readers
//! see it as a payload error, and the API answers it 408.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, web};
use futures_util::Stream;
use futures_util::stream::LocalBoxStream;

use crate::context::Ctx;

/// The payload of one request, cut off at its deadline.
struct Deadline {
    inner: Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body did not arrive in time");
            return Poll::Ready(Some(Err(PayloadError::Io(late))));
        }
        Poll::Pending
    }
}

/// Whether a payload error is this middleware's deadline.
pub fn is_deadline(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

/// The middleware (wrapped with `actix_web::middleware::from_fn`).
pub async fn limit(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let timeout_ms = req.app_data::<web::Data<Ctx>>().map_or(DEFAULT_MS, |ctx| ctx.settings.server.body_timeout_ms);
    let inner = req.take_payload();
    let sleep = Box::pin(tokio::time::sleep(Duration::from_millis(timeout_ms)));
    let timed: LocalBoxStream<'static, Result<Bytes, PayloadError>> =
        Box::pin(Deadline { inner, sleep, expired: false });
    req.set_payload(Payload::from(timed));
    next.call(req).await
}

/// Only if a request somehow runs without the app's context.
const DEFAULT_MS: u64 = 30_000;
