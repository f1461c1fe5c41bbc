//! A tracing span per call (`rpc` with method, request id and peer) and one
//! event per outcome: debug for success, info for errors.

use std::convert::Infallible;
use std::task::{Context as TaskContext, Poll};

use tokio::time::Instant;
use tower::Layer;
use tracing::Instrument;

use super::{Inner, ResponseFuture};
use crate::server::{Request, Response};

/// Adds [`Logging`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LoggingLayer;

impl LoggingLayer {
    /// The layer.
    pub fn new() -> LoggingLayer {
        LoggingLayer
    }
}

impl<S> Layer<S> for LoggingLayer {
    type Service = Logging<S>;
    fn layer(&self, inner: S) -> Logging<S> {
        Logging { inner }
    }
}

/// Logs every call.
#[derive(Clone, Debug)]
pub struct Logging<S> {
    /// The wrapped service.
    inner: S,
}

impl<S: Inner> tower::Service<Request> for Logging<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        let span = tracing::info_span!(
            "rpc",
            method = %request.ctx.method(),
            id = request.ctx.request_id(),
            peer = %request.ctx.peer()
        );
        let start = Instant::now();
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let response = future.await;
                let elapsed_us = start.elapsed().as_micros() as u64;
                match &response {
                    Ok(Response { result: Ok(_) }) => tracing::debug!(elapsed_us, "ok"),
                    Ok(Response { result: Err(status) }) => {
                        tracing::info!(elapsed_us, code = %status.code(), message = status.message(), "failed")
                    }
                    Err(never) => match *never {},
                }
                response
            }
            .instrument(span),
        )
    }
}
