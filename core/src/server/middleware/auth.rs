//! Authentication: the `authorization` metadata value is checked before the
//! handler runs; a failure is `Unauthenticated`, not executed, not retryable.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tower::Layer;

use super::{Inner, ResponseFuture};
use crate::context::Context;
use crate::server::{Request, Response};
use crate::status::Status;

/// The metadata key carrying credentials.
pub const AUTHORIZATION: &str = "authorization";

type Check = Arc<dyn Fn(Option<&str>, &Context) -> Result<(), Status> + Send + Sync>;

/// Adds [`Auth`].
#[derive(Clone)]
pub struct AuthLayer {
    /// Decides from the token (and the context: method, peer).
    check: Check,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer").finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// Checks each call with `check(token, ctx)`.
    pub fn new(
        check: impl Fn(Option<&str>, &Context) -> Result<(), Status> + Send + Sync + 'static,
    ) -> AuthLayer {
        AuthLayer {
            check: Arc::new(check),
        }
    }

    /// Accepts exactly the tokens given (`authorization = "<token>"`).
    pub fn tokens(tokens: impl IntoIterator<Item = String>) -> AuthLayer {
        let tokens: std::collections::BTreeSet<String> = tokens.into_iter().collect();
        AuthLayer::new(move |token, ctx| match token {
            Some(token) if tokens.contains(token) => Ok(()),
            Some(_) => Err(Status::unauthenticated(format!(
                "{}: invalid token",
                ctx.method()
            ))),
            None => Err(Status::unauthenticated(format!(
                "{}: missing `{AUTHORIZATION}` metadata",
                ctx.method()
            ))),
        })
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            check: Arc::clone(&self.check),
        }
    }
}

/// Rejects unauthenticated calls.
#[derive(Clone)]
pub struct Auth<S> {
    /// The wrapped service.
    inner: S,
    /// The check.
    check: Check,
}

impl<S> std::fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl<S: Inner> tower::Service<Request> for Auth<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        if let Err(status) = (self.check)(request.ctx.get(AUTHORIZATION), &request.ctx) {
            let status = status.not_executed().with_retryable(false);
            return Box::pin(std::future::ready(Ok(Response::error(status))));
        }
        Box::pin(self.inner.call(request))
    }
}
