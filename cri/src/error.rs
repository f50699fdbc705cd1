//! The one error type a runtime core returns to the CRI layer, and its one mapping to
//! `tonic::Status`.

/// What went wrong in a CRI call, in terms the client can act on. Messages name the field or
/// the object.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} name {name:?} is already in use by {kind} {id}")]
    AlreadyExists {
        kind: &'static str,
        name: String,
        id: String,
    },
    #[error("{kind} {id} is {state}: {action} needs it {needed}")]
    FailedPrecondition {
        kind: &'static str,
        id: String,
        state: String,
        action: &'static str,
        needed: &'static str,
    },
    #[error("{what} did not finish within {seconds} s")]
    DeadlineExceeded { what: String, seconds: i64 },
    #[error("{what}")]
    ResourceExhausted { what: String },
    #[error("{rpc} is not supported by this runtime")]
    Unimplemented { rpc: &'static str },
    /// The caller's credentials were refused by a third party (an image registry).
    #[error("{what}")]
    Unauthenticated { what: String },
    /// A service the call depends on (an image registry) cannot be reached.
    #[error("{what}")]
    Unavailable { what: String },
    #[error("{context}: {source}")]
    Internal {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CriError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CriError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        CriError::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        CriError::Internal {
            context: context.into(),
            source: source.into(),
        }
    }
}

pub use kinglet_util::chain;

impl From<CriError> for tonic::Status {
    fn from(err: CriError) -> Self {
        use tonic::Code;
        let code = match &err {
            CriError::InvalidArgument { .. } => Code::InvalidArgument,
            CriError::NotFound { .. } => Code::NotFound,
            CriError::AlreadyExists { .. } => Code::AlreadyExists,
            CriError::FailedPrecondition { .. } => Code::FailedPrecondition,
            CriError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            CriError::ResourceExhausted { .. } => Code::ResourceExhausted,
            CriError::Unimplemented { .. } => Code::Unimplemented,
            CriError::Unauthenticated { .. } => Code::Unauthenticated,
            CriError::Unavailable { .. } => Code::Unavailable,
            CriError::Internal { .. } => Code::Internal,
        };
        tonic::Status::new(code, chain(&err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages_name_the_object() {
        let s: tonic::Status = CriError::AlreadyExists {
            kind: "sandbox",
            name: "web_default_uid_0".into(),
            id: "abc".into(),
        }
        .into();
        assert_eq!(s.code(), tonic::Code::AlreadyExists);
        assert!(s.message().contains("abc"), "{}", s.message());
        let s: tonic::Status =
            CriError::invalid("config.metadata.name", "must not be empty").into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("config.metadata.name"));
        let io = std::io::Error::other("disk full");
        let s: tonic::Status = CriError::internal("write record /x", io).into();
        assert_eq!(s.code(), tonic::Code::Internal);
        assert_eq!(s.message(), "write record /x: disk full");
        let s: tonic::Status = CriError::Unauthenticated {
            what: "registry r refused access".into(),
        }
        .into();
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::Unauthenticated, "registry r refused access")
        );
        let s: tonic::Status = CriError::Unavailable {
            what: "cannot reach r".into(),
        }
        .into();
        assert_eq!(s.code(), tonic::Code::Unavailable);
    }
}
