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
    ///
    /// The presented token is compared with every configured token in constant
    /// time ([`token_matches`]), so response timing reveals neither how much of
    /// a guess was right nor which configured token it was close to (a set or
    /// map lookup stops at the first differing byte).
    pub fn tokens(tokens: impl IntoIterator<Item = String>) -> AuthLayer {
        let tokens: Vec<String> = tokens.into_iter().collect();
        AuthLayer::new(move |token, ctx| match token {
            Some(token) if token_matches(token, &tokens) => Ok(()),
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

/// Whether `presented` equals one of `accepted`, in time that depends only on
/// the lengths involved: every accepted token is compared, every byte of each
/// equal-length one is looked at, and the results are combined without an
/// early exit. (Lengths are not secret here: a token's length is no help in
/// guessing its bytes.)
pub fn token_matches<T: AsRef<str>>(presented: &str, accepted: &[T]) -> bool {
    let mut matched = 0u8;
    for token in accepted {
        matched |= u8::from(constant_time_eq(
            presented.as_bytes(),
            token.as_ref().as_bytes(),
        ));
    }
    matched == 1
}

/// Byte-slice equality without a data-dependent early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // `black_box` keeps the optimiser from turning the fold back into an
    // early-exit comparison.
    std::hint::black_box(difference) == 0
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

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn token_matches_only_an_exact_configured_token() {
        // Proves the constant-time check is still an equality check: a prefix,
        // an extension, a one-byte change and the empty token are all refused.
        let accepted = ["alpha-secret".to_owned(), "beta-secret".to_owned()];
        assert!(token_matches("alpha-secret", &accepted));
        assert!(token_matches("beta-secret", &accepted));
        for wrong in ["alpha-secre", "alpha-secret!", "alpha-secreT", "", "gamma"] {
            assert!(!token_matches(wrong, &accepted), "{wrong:?} was accepted");
        }
        assert!(!token_matches("alpha-secret", &[] as &[String]));
    }
}
