//! The per-call context a handler receives, and deadline propagation: while a
//! handler runs, its deadline is in a task-local, so any call it makes through a
//! squall client inherits the *remaining* budget without being told.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::{Codec, Metadata};

tokio::task_local! {
    /// The deadline of the handler this task is running, if it has one.
    static DEADLINE: Option<Instant>;
}

/// The deadline inherited from the handler running on this task, if any.
pub fn inherited_deadline() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok().flatten()
}

/// A call's deadline: its own `timeout` from `now`, shortened by the deadline
/// inherited from the handler running on this task.
pub fn call_deadline(timeout: Option<Duration>, now: Instant) -> Option<Instant> {
    match (timeout.map(|timeout| now + timeout), inherited_deadline()) {
        (Some(own), Some(inherited)) => Some(own.min(inherited)),
        (own, inherited) => own.or(inherited),
    }
}

/// Runs `future` with `deadline` as the inherited deadline of every call it makes.
pub async fn with_deadline<F: std::future::Future>(
    deadline: Option<Instant>,
    future: F,
) -> F::Output {
    DEADLINE.scope(deadline, future).await
}

/// Polls `future` once with `deadline` as the inherited deadline, as
/// [`with_deadline`] would for that poll (the server's inline first poll).
pub(crate) fn poll_with_deadline<F: std::future::Future + Unpin>(
    deadline: Option<Instant>,
    future: &mut F,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<F::Output> {
    DEADLINE.sync_scope(deadline, || std::pin::Pin::new(future).poll(cx))
}

/// What a handler knows about the call it is serving.
#[derive(Clone, Debug)]
pub struct Context {
    /// Shared so middleware and handler can hold it without copying metadata.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `Service.Method`.
    method: String,
    /// The caller's request id on its connection (for logs).
    request_id: u64,
    /// Who is calling.
    peer: SocketAddr,
    /// When the caller stops waiting, if it said.
    deadline: Option<Instant>,
    /// The request's metadata (user key/values: auth token, hash key, trace id).
    meta: Metadata,
    /// The payload codec the request used; the reply uses it too.
    codec: Codec,
    /// Whether the caller declared the method idempotent.
    idempotent: bool,
}

impl Context {
    /// A context (the server builds these; tests and custom transports may too).
    pub fn new(
        method: String,
        request_id: u64,
        peer: SocketAddr,
        deadline: Option<Instant>,
        meta: Metadata,
        codec: Codec,
        idempotent: bool,
    ) -> Context {
        Context {
            inner: Arc::new(Inner {
                method,
                request_id,
                peer,
                deadline,
                meta,
                codec,
                idempotent,
            }),
        }
    }

    /// `Service.Method`.
    pub fn method(&self) -> &str {
        &self.inner.method
    }
    /// The request id on the caller's connection.
    pub fn request_id(&self) -> u64 {
        self.inner.request_id
    }
    /// The caller's address.
    pub fn peer(&self) -> SocketAddr {
        self.inner.peer
    }
    /// The call's deadline, if the caller set one.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }
    /// The budget left before the deadline (`None`: no deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.inner
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
    /// The request's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.inner.meta
    }
    /// A user metadata value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.inner.meta.get(key)
    }
    /// The payload codec of the request (and of the reply).
    pub fn codec(&self) -> Codec {
        self.inner.codec
    }
    /// Whether the caller declared the method idempotent.
    pub fn idempotent(&self) -> bool {
        self.inner.idempotent
    }
}
