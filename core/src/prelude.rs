//! The names most programs need, for `use squall::prelude::*;`: define a
//! service, serve it, call it, say how a call failed. The transport traits come
//! in unnamed (`as _`), so their methods work on any transport without their
//! names entering your scope.

pub use crate::client::{CallHandle, Caller};
pub use crate::transport::{Listener as _, Transport as _};
pub use crate::{service, CallOptions, Client, Code, Context, Router, Server, Status, Tcp};
