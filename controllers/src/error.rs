//! The controllers' one error type.

/// What went wrong in a controller's pass. Messages name the object.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The object store refused or failed a write.
    #[error("{object}: {context}")]
    Store {
        object: String,
        context: String,
        #[source]
        source: kinglet_kubelet::KubeletError,
    },
    /// An object the controller cannot act on as it is (a bad selector, ...).
    #[error("{object}: {reason}")]
    Invalid { object: String, reason: String },
}

impl ControllerError {
    pub fn store(
        object: impl Into<String>,
        context: impl Into<String>,
        source: kinglet_kubelet::KubeletError,
    ) -> Self {
        ControllerError::Store {
            object: object.into(),
            context: context.into(),
            source,
        }
    }
}
