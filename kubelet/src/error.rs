//! The mini-kubelet's errors: [`KubeletError`] for its own operations (objects, the store,
//! startup). Failures of the runtime it drives are [`crate::RuntimeError`]s, and of a pod's
//! pass [`crate::pod::ReconcileError`]s. The daemon maps them to CRI/gRPC codes at its edge;
//! nothing here knows about gRPC.

/// What went wrong in the mini-kubelet. Messages name the object or field; causes are
/// `source`s, not repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// Bad input from a user (a manifest, a kind, a setting).
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// A failure of the kubelet's own machinery (the object store, a task).
    #[error("{context}")]
    Internal {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl KubeletError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        KubeletError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        KubeletError::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        KubeletError::Internal {
            context: context.into(),
            source: source.into(),
        }
    }
}

pub use kinglet_util::chain;
