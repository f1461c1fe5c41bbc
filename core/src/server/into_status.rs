//! How a tower layer whose error is not `Infallible` joins the stack: its
//! errors become a [`Response`] carrying a [`Status`] (the mapping is the
//! `From` impls in [`crate::status`]), so every layer above it, and the
//! connection, see one error type and the stack stays a [`BoxService`].
//!
//! No boxing is added: the future is the inner one mapped through a function
//! pointer, and the stack was already boxed once per layer.
//!
//! [`BoxService`]: super::BoxService

use std::convert::Infallible;
use std::task::{Context as TaskContext, Poll};

use futures_util::future::{self, Either, FutureExt, Map, Ready};

use super::{Request, Response};
use crate::status::Status;

/// Wraps a service whose error converts into [`Status`] into one that never
/// fails: an error becomes an error [`Response`].
#[derive(Clone, Debug)]
pub(crate) struct IntoStatus<S> {
    /// The service the layer built.
    inner: S,
    /// An error `poll_ready` returned, answered to the next call. That call
    /// never reached the inner service, so it is marked *not executed*.
    not_ready: Option<Status>,
}

impl<S> IntoStatus<S> {
    pub(crate) fn new(inner: S) -> IntoStatus<S> {
        IntoStatus {
            inner,
            not_ready: None,
        }
    }
}

/// The inner future, its error turned into an error response.
type Mapped<F, E> = Map<F, fn(Result<Response, E>) -> Result<Response, Infallible>>;

fn respond<E: Into<Status>>(result: Result<Response, E>) -> Result<Response, Infallible> {
    Ok(result.unwrap_or_else(|error| Response::error(error.into())))
}

impl<S> tower::Service<Request> for IntoStatus<S>
where
    S: tower::Service<Request, Response = Response>,
    S::Error: Into<Status>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Mapped<S::Future, S::Error>, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => {
                self.not_ready = Some(error.into().not_executed());
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.not_ready.take() {
            Some(status) => Either::Right(future::ready(Ok(Response::error(status)))),
            None => {
                let respond: fn(Result<Response, S::Error>) -> Result<Response, Infallible> =
                    respond::<S::Error>;
                Either::Left(self.inner.call(request).map(respond))
            }
        }
    }
}
