//! The arith service of Go's net/rpc documentation, defined once for both
//! `arith_server` and `arith_client`: the trait is the contract, so a client
//! calling a method the server lacks, or with the wrong arguments, does not
//! compile.

use serde::{Deserialize, Serialize};
use squall::{Context, Status};

/// Arguments of both methods.
#[derive(Debug, Serialize, Deserialize)]
pub struct Args {
    /// The left operand.
    pub a: i64,
    /// The right operand.
    pub b: i64,
}

/// Quotient and remainder.
#[derive(Debug, Serialize, Deserialize)]
pub struct Quotient {
    /// `a / b`.
    pub quo: i64,
    /// `a % b`.
    pub rem: i64,
}

/// `Arith.Multiply` and `Arith.Divide`. Pure functions, so both are safe to
/// re-send after a failure that may have run them.
#[squall::service]
pub trait Arith {
    /// `a * b`; `InvalidArgument` if it overflows.
    #[idempotent]
    async fn multiply(&self, ctx: Context, args: Args) -> Result<i64, Status>;
    /// `a / b` and `a % b`; `InvalidArgument` if `b` is zero.
    #[idempotent]
    async fn divide(&self, ctx: Context, args: Args) -> Result<Quotient, Status>;
}
