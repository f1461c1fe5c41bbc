//! The one error type of squall: a gRPC-vocabulary [`Code`], a message, and the
//! two properties resilience code depends on — is the failure worth retrying, and
//! may the request have executed on the server.

use std::fmt;

/// Status codes, numbered as in gRPC so operators can read them without a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Code {
    /// Not an error; only ever seen on the wire in successful responses.
    Ok = 0,
    /// The caller cancelled the call.
    Cancelled = 1,
    /// An error with no better code (for example a status code from a newer peer).
    Unknown = 2,
    /// The arguments could not be decoded or were rejected by the handler.
    InvalidArgument = 3,
    /// The deadline expired before the call completed.
    DeadlineExceeded = 4,
    /// No such service or method.
    NotFound = 5,
    /// The entity the call tried to create already exists.
    AlreadyExists = 6,
    /// The caller is known but not allowed to do this.
    PermissionDenied = 7,
    /// A limit was hit: rate limit, in-flight limit, server overloaded.
    ResourceExhausted = 8,
    /// The system is not in a state where the call can run.
    FailedPrecondition = 9,
    /// The call was aborted, typically by a concurrency conflict.
    Aborted = 10,
    /// An argument was outside the valid range.
    OutOfRange = 11,
    /// The method exists but is not implemented.
    Unimplemented = 12,
    /// An invariant broke: a handler panicked, a reply could not be encoded.
    Internal = 13,
    /// The service cannot be reached: connection refused, reset, peer dead, shutting down.
    Unavailable = 14,
    /// Unrecoverable data loss.
    DataLoss = 15,
    /// The caller did not present valid credentials.
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code for a wire value; values from a newer peer map to [`Code::Unknown`].
    pub fn from_u8(value: u8) -> Code {
        Code::ALL
            .get(value as usize)
            .copied()
            .unwrap_or(Code::Unknown)
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The code's name as written in traces and scenario files (`Unavailable`).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "Ok",
            Code::Cancelled => "Cancelled",
            Code::Unknown => "Unknown",
            Code::InvalidArgument => "InvalidArgument",
            Code::DeadlineExceeded => "DeadlineExceeded",
            Code::NotFound => "NotFound",
            Code::AlreadyExists => "AlreadyExists",
            Code::PermissionDenied => "PermissionDenied",
            Code::ResourceExhausted => "ResourceExhausted",
            Code::FailedPrecondition => "FailedPrecondition",
            Code::Aborted => "Aborted",
            Code::OutOfRange => "OutOfRange",
            Code::Unimplemented => "Unimplemented",
            Code::Internal => "Internal",
            Code::Unavailable => "Unavailable",
            Code::DataLoss => "DataLoss",
            Code::Unauthenticated => "Unauthenticated",
        }
    }

    /// Whether a failure with this code is, by default, worth trying again
    /// (possibly elsewhere). Whether it is *safe* depends on [`Status::may_have_executed`].
    pub fn is_retryable_by_default(self) -> bool {
        matches!(
            self,
            Code::Unavailable | Code::ResourceExhausted | Code::Aborted | Code::DeadlineExceeded
        )
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a failed call.
///
/// Two properties are explicit because retries depend on them:
/// - [`Status::is_retryable`]: the failure is transient; another attempt may succeed.
/// - [`Status::may_have_executed`]: the handler may have run (its side effects may
///   exist). A call that may have executed is only re-sent when its method is
///   declared idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// What kind of failure this is.
    code: Code,
    /// A human-readable explanation: what happened and where.
    message: String,
    /// Whether another attempt may succeed.
    retryable: bool,
    /// Whether the request may have reached and run in a handler.
    may_have_executed: bool,
}

impl Status {
    /// A status with the code's default retryability that *may have executed*
    /// (the conservative default: nothing is known about the server side).
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
            retryable: code.is_retryable_by_default(),
            may_have_executed: true,
        }
    }

    /// Marks that the request provably did not reach a handler (connect failed,
    /// refused before dispatch, shed by the server). Such a call is safe to re-send.
    pub fn not_executed(mut self) -> Status {
        self.may_have_executed = false;
        self
    }

    /// Marks that the request may have run.
    pub fn executed(mut self) -> Status {
        self.may_have_executed = true;
        self
    }

    /// Overrides the code's default retryability.
    pub fn with_retryable(mut self, retryable: bool) -> Status {
        self.retryable = retryable;
        self
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether the request may have run in a handler.
    pub fn may_have_executed(&self) -> bool {
        self.may_have_executed
    }

    /// `Cancelled`.
    pub fn cancelled(message: impl Into<String>) -> Status {
        Status::new(Code::Cancelled, message)
    }
    /// `InvalidArgument` (the handler saw the request).
    pub fn invalid_argument(message: impl Into<String>) -> Status {
        Status::new(Code::InvalidArgument, message)
    }
    /// `DeadlineExceeded`.
    pub fn deadline_exceeded(message: impl Into<String>) -> Status {
        Status::new(Code::DeadlineExceeded, message)
    }
    /// `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Status {
        Status::new(Code::NotFound, message)
    }
    /// `ResourceExhausted`.
    pub fn resource_exhausted(message: impl Into<String>) -> Status {
        Status::new(Code::ResourceExhausted, message)
    }
    /// `Internal`.
    pub fn internal(message: impl Into<String>) -> Status {
        Status::new(Code::Internal, message)
    }
    /// `Unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Status {
        Status::new(Code::Unavailable, message)
    }
    /// `Unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Status {
        Status::new(Code::Unauthenticated, message)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if !self.may_have_executed {
            f.write_str(" (not executed)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Status {}

/// How the errors of tower layers stacked on a [`Server`](crate::Server)
/// become a call's status (see [`Server::layer`](crate::Server::layer)).
impl From<std::convert::Infallible> for Status {
    fn from(never: std::convert::Infallible) -> Status {
        match never {}
    }
}

/// tower's `Timeout` fired: the call was dropped mid-way, so it may have run
/// (in part).
impl From<tower::timeout::error::Elapsed> for Status {
    fn from(_: tower::timeout::error::Elapsed) -> Status {
        Status::deadline_exceeded("a tower timeout layer elapsed before the call finished")
    }
}

/// tower's `LoadShed` refused the call before the inner service saw it: not
/// executed, so safe to retry elsewhere. The message ends with the same word
/// as the built-in shedder's, so [`Metrics`](crate::server::middleware::Metrics)
/// counts both as a load-shed rejection.
impl From<tower::load_shed::error::Overloaded> for Status {
    fn from(_: tower::load_shed::error::Overloaded) -> Status {
        Status::resource_exhausted("overloaded (a tower load shed layer refused the call): shed")
            .not_executed()
    }
}

/// tower's layers return `BoxError`. A boxed `Status`, `Elapsed` or
/// `Overloaded` maps as itself; anything else is `Internal`, may have executed
/// (nothing is known about how far the call got).
impl From<Box<dyn std::error::Error + Send + Sync>> for Status {
    fn from(error: Box<dyn std::error::Error + Send + Sync>) -> Status {
        let error = match error.downcast::<Status>() {
            Ok(status) => return *status,
            Err(error) => error,
        };
        let error = match error.downcast::<tower::timeout::error::Elapsed>() {
            Ok(elapsed) => return Status::from(*elapsed),
            Err(error) => error,
        };
        match error.downcast::<tower::load_shed::error::Overloaded>() {
            Ok(overloaded) => Status::from(*overloaded),
            Err(error) => Status::internal(format!("middleware failed: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_value() {
        for code in Code::ALL {
            assert_eq!(Code::from_u8(code.as_u8()), code);
        }
        assert_eq!(Code::from_u8(200), Code::Unknown);
    }

    #[test]
    fn statuses_may_have_executed_unless_marked_otherwise() {
        let status = Status::unavailable("peer closed");
        assert!(status.may_have_executed());
        assert!(status.is_retryable());
        let shed = Status::resource_exhausted("shed").not_executed();
        assert!(!shed.may_have_executed());
        assert!(!Status::invalid_argument("bad").is_retryable());
    }

    #[test]
    fn tower_errors_map_to_documented_statuses() {
        type BoxError = Box<dyn std::error::Error + Send + Sync>;
        let elapsed = Status::from(BoxError::from(tower::timeout::error::Elapsed::new()));
        assert_eq!(elapsed.code(), Code::DeadlineExceeded);
        assert!(elapsed.may_have_executed());

        let shed = Status::from(BoxError::from(tower::load_shed::error::Overloaded::new()));
        assert_eq!(shed.code(), Code::ResourceExhausted);
        assert!(!shed.may_have_executed());
        assert!(shed.is_retryable());

        let own = Status::not_found("gone").not_executed();
        assert_eq!(Status::from(BoxError::from(own.clone())), own);

        let other = Status::from(BoxError::from("disk on fire"));
        assert_eq!(other.code(), Code::Internal);
        assert!(other.may_have_executed());
        assert!(other.message().contains("disk on fire"));
    }
}
