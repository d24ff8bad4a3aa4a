//! The service's one error type.

/// What the service refuses, and which input field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceError {
    NotFound { field: &'static str, message: String },
    Conflict { field: &'static str, message: String },
    Invalid { field: String, message: String },
    /// A limit on what the service holds (not on one request) is reached.
    LimitReached { field: &'static str, message: String },
    /// The worker's queue is full: retry later.
    Busy,
    Unavailable(String),
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::NotFound { field, message } | ServiceError::Conflict { field, message } | ServiceError::LimitReached { field, message } => {
                write!(f, "{field}: {message}")
            }
            ServiceError::Invalid { field, message } => write!(f, "{field}: {message}"),
            ServiceError::Busy => write!(f, "the service is busy; retry"),
            ServiceError::Unavailable(message) => write!(f, "{message}"),
        }
    }
}
