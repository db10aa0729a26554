//! The proxy's errors: each says which side failed, and maps to a status code in one place.

use http::StatusCode;

/// Who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no endpoint matches this request")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("no healthy member in pool {pool}")]
    /// No member could take the request (within the endpoint's `hold`, if any).
    NoMember { pool: String, retry_after_s: u64 },
    #[error("cannot connect to upstream {member}: {source}")]
    Connect { member: String, source: super::upstream::UpstreamError },
    #[error("upstream {member} did not answer within {secs:.1}s")]
    Timeout { member: String, secs: f64 },
    #[error("upstream {member} failed: {source}")]
    Upstream { member: String, source: super::upstream::UpstreamError },
    #[error("client request body failed: {0}")]
    ClientBody(String),
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            Self::NoRoute
            | Self::MethodNotAllowed
            | Self::BadRequest(_)
            | Self::BodyTooLarge { .. }
            | Self::ClientBody(_) => Side::Client,
            Self::Connect { .. } | Self::Timeout { .. } | Self::Upstream { .. } | Self::NoMember { .. } => {
                Side::Upstream
            }
        }
    }

    /// The one error → status table.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) | Self::ClientBody(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoMember { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect { .. } | Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}
