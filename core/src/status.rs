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
}
