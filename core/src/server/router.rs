//! `Service.Method` dispatch: typed async handlers, type-erased into a table.
//!
//! Rust has no reflection, so Go's `rpc.Register(new(Arith))` becomes either a
//! closure per method ([`Router::route`]) or a [`ServiceDef`] that lists its
//! methods once ([`Router::register`]). `#[squall::service]` writes the
//! `ServiceDef` for a trait (its `{Trait}Server`); both ways the compiler checks
//! every argument and reply type.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::{de::DeserializeOwned, Serialize};

use crate::context::Context;
use crate::status::Status;

/// A request as middleware sees it: context plus the still-encoded arguments.
#[derive(Debug)]
pub struct Request {
    /// Method, deadline, metadata, peer.
    pub ctx: Context,
    /// The encoded arguments, in `ctx.codec()`.
    pub body: Bytes,
}

/// A response as middleware sees it.
#[derive(Debug)]
pub struct Response {
    /// The encoded reply, or the failure.
    pub result: Result<Bytes, Status>,
}

impl Response {
    /// A failed response.
    pub fn error(status: Status) -> Response {
        Response {
            result: Err(status),
        }
    }
}

/// A type-erased handler. Its future already has the tower `Service` output
/// type, so dispatch hands it on without boxing it a second time.
type Handler =
    Arc<dyn Fn(Request) -> BoxFuture<'static, Result<Response, Infallible>> + Send + Sync>;

/// The method table. Cheap to clone; implements `tower::Service<Request>`.
#[derive(Clone, Default)]
pub struct Router {
    /// Handlers by `Service.Method`. A BTreeMap: lookups only, and listing methods
    /// is deterministic.
    methods: Arc<BTreeMap<String, Handler>>,
    /// Whether an unknown-method reply lists the registered methods. Off by
    /// default: the list maps a server's whole surface for any caller, so it is
    /// only for debugging a client against a server you own.
    list_methods_in_errors: bool,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .field("list_methods_in_errors", &self.list_methods_in_errors)
            .finish()
    }
}

fn erase<A, R, F, Fut>(handler: F) -> Handler
where
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Context, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |request: Request| {
        let handler = Arc::clone(&handler);
        Box::pin(async move {
            let codec = request.ctx.codec();
            let args: A = match codec.decode(&request.body) {
                Ok(args) => args,
                Err(status) => return Ok(Response::error(status.not_executed())),
            };
            let result = match handler(request.ctx, args).await {
                Ok(reply) => codec.encode(&reply),
                Err(status) => Err(status),
            };
            Ok(Response { result })
        }) as BoxFuture<'static, Result<Response, Infallible>>
    })
}

impl Router {
    /// An empty router.
    pub fn new() -> Router {
        Router::default()
    }

    /// Registers `handler` under `method` (`"Arith.Multiply"`). Arguments are
    /// decoded in the request's codec (undecodable → `InvalidArgument`), the reply
    /// encoded in the same codec.
    ///
    /// # Panics
    /// If `method` is not `Service.Method` or is registered twice: both are
    /// programmer errors found at start-up.
    pub fn route<A, R, F, Fut>(mut self, method: &str, handler: F) -> Router
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Context, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Status>> + Send + 'static,
    {
        assert!(
            valid_method_name(method),
            "method {method:?} must be `Service.Method` (letters, digits, `_`)"
        );
        let methods = Arc::make_mut(&mut self.methods);
        let previous = methods.insert(method.to_owned(), erase(handler));
        assert!(previous.is_none(), "method {method:?} registered twice");
        self
    }

    /// Registers every method of a [`ServiceDef`], as Go's
    /// `rpc.Register(new(Arith))`: a `#[squall::service]` trait's
    /// `{Trait}Server::new(implementation)`, or a hand-written `ServiceDef`.
    ///
    /// # Panics
    /// If a method is already registered (see [`Router::route`]).
    pub fn register<S: ServiceDef>(self, service: S) -> Router {
        let mut methods = Methods {
            service: Arc::new(service),
            router: self,
        };
        S::methods(&mut methods);
        methods.router
    }

    /// Makes unknown-method replies list every registered method: a debugging
    /// aid for a server you own. Off by default, because the list tells any
    /// caller, authenticated or not, the server's whole surface.
    pub fn list_methods_in_errors(mut self) -> Router {
        self.list_methods_in_errors = true;
        self
    }

    /// Whether `method` is registered: for middleware that must treat the
    /// router's methods apart from whatever names callers send.
    pub fn has_method(&self, method: &str) -> bool {
        self.methods.contains_key(method)
    }

    /// The registered methods, sorted.
    pub fn method_names(&self) -> Vec<String> {
        self.methods.keys().cloned().collect()
    }

    /// Dispatches one request.
    pub fn dispatch(&self, request: Request) -> BoxFuture<'static, Response> {
        let future = self.route_request(request);
        Box::pin(async move {
            match future.await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
    }

    /// Dispatches one request, in the tower `Service` future type.
    fn route_request(&self, request: Request) -> BoxFuture<'static, Result<Response, Infallible>> {
        match self.methods.get(request.ctx.method()) {
            Some(handler) => handler(request),
            None => {
                let status = Status::not_found(self.unknown_method_message(request.ctx.method()))
                    .not_executed();
                Box::pin(std::future::ready(Ok(Response::error(status))))
            }
        }
    }
}

impl Router {
    /// The message of an unknown-method reply: the name the caller sent, and the
    /// registered methods only if [`Router::list_methods_in_errors`] asked.
    fn unknown_method_message(&self, method: &str) -> String {
        if self.list_methods_in_errors {
            let registered = self.methods.keys().cloned().collect::<Vec<_>>().join(", ");
            format!("unknown method {method:?} (registered: {registered})")
        } else {
            format!("unknown method {method:?}")
        }
    }
}

fn valid_method_name(method: &str) -> bool {
    let Some((service, name)) = method.split_once('.') else {
        return false;
    };
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok(service) && ok(name)
}

impl tower::Service<Request> for Router {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.route_request(request)
    }
}

/// A set of methods registered together under one service name. Named
/// `ServiceDef`, not `Service`, so it never meets `tower::Service` in one file.
///
/// `#[squall::service]` implements it for you (`{Trait}Server`); by hand:
///
/// ```
/// use std::sync::Arc;
/// use squall::server::{Methods, Router, ServiceDef};
/// use squall::{Context, Status};
///
/// struct Arith;
/// impl Arith {
///     async fn multiply(self: Arc<Self>, _ctx: Context, (a, b): (i64, i64)) -> Result<i64, Status> {
///         Ok(a * b)
///     }
/// }
/// impl ServiceDef for Arith {
///     const NAME: &'static str = "Arith";
///     fn methods(m: &mut Methods<Self>) {
///         m.method("Multiply", Self::multiply);
///     }
/// }
/// let router = Router::new().register(Arith);
/// assert_eq!(router.method_names(), ["Arith.Multiply"]);
/// ```
pub trait ServiceDef: Send + Sync + Sized + 'static {
    /// The service name, the part before the dot.
    const NAME: &'static str;
    /// Lists the methods.
    fn methods(methods: &mut Methods<Self>);
}

/// The registration helper passed to [`ServiceDef::methods`].
#[derive(Debug)]
pub struct Methods<S> {
    /// The service instance every method shares.
    service: Arc<S>,
    /// The router being built.
    router: Router,
}

impl<S: ServiceDef> Methods<S> {
    /// Registers `S::NAME.name` as `handler(self: Arc<S>, ctx, args)`.
    pub fn method<A, R, F, Fut>(&mut self, name: &str, handler: F) -> &mut Methods<S>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Arc<S>, Context, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Status>> + Send + 'static,
    {
        let service = Arc::clone(&self.service);
        let router = std::mem::take(&mut self.router);
        self.router = router.route(&format!("{}.{name}", S::NAME), move |ctx, args| {
            handler(Arc::clone(&service), ctx, args)
        });
        self
    }
}
