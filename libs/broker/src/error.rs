//! Broker errors, and how each reaches a client: a Pulsar `ServerError` code
//! on the binary protocol, an HTTP status with `{"reason": …}` on the admin API.

use magnetar_managed_ledger::MlError;
use magnetar_schema::SchemaError;
use magnetar_wire::ServerError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TopicNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    ProducerBusy(String),
    #[error("{0}")]
    ConsumerBusy(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    ServiceNotReady(String),
    /// Backlog quota exceeded, policy `producer_request_hold`.
    #[error("{0}")]
    QuotaExceededHold(String),
    /// Backlog quota exceeded, policy `producer_exception`.
    #[error("{0}")]
    QuotaExceededException(String),
    /// No valid credentials.
    #[error("authentication failed: {0}")]
    Unauthenticated(String),
    /// Valid credentials, not allowed to do this.
    #[error("not authorized: {0}")]
    Unauthorized(String),
    #[error("metadata service: {0}")]
    Meta(#[from] magnetar_meta_client::Error),
    #[error("storage: {0}")]
    Storage(#[from] MlError),
    /// A schema refused: not valid, or not compatible with the stored ones.
    #[error("{0}")]
    Schema(#[from] SchemaError),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

impl BrokerError {
    pub fn server_error(&self) -> ServerError {
        match self {
            BrokerError::NotFound(_) | BrokerError::TopicNotFound(_) => ServerError::TopicNotFound,
            BrokerError::ProducerBusy(_) => ServerError::ProducerBusy,
            BrokerError::ConsumerBusy(_) => ServerError::ConsumerBusy,
            BrokerError::NotAllowed(_) => ServerError::NotAllowedError,
            BrokerError::BadRequest(_) => ServerError::InvalidTopicName,
            BrokerError::Meta(_) => ServerError::MetadataError,
            BrokerError::Storage(MlError::Fenced(_)) => ServerError::ServiceNotReady,
            BrokerError::Storage(MlError::Terminated(_)) => ServerError::TopicTerminatedError,
            BrokerError::Storage(_) => ServerError::PersistenceError,
            BrokerError::ServiceNotReady(_) => ServerError::ServiceNotReady,
            BrokerError::QuotaExceededHold(_) => ServerError::ProducerBlockedQuotaExceededError,
            BrokerError::QuotaExceededException(_) => {
                ServerError::ProducerBlockedQuotaExceededException
            }
            BrokerError::Unauthenticated(_) => ServerError::AuthenticationError,
            BrokerError::Unauthorized(_) => ServerError::AuthorizationError,
            BrokerError::Conflict(_) | BrokerError::Precondition(_) => ServerError::NotAllowedError,
            BrokerError::Internal(_) => ServerError::UnknownError,
            // Pulsar answers both bad and incompatible schemas so.
            BrokerError::Schema(_) => ServerError::IncompatibleSchema,
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            BrokerError::NotFound(_) | BrokerError::TopicNotFound(_) => 404,
            BrokerError::Conflict(_) | BrokerError::ProducerBusy(_) => 409,
            BrokerError::ConsumerBusy(_) => 409,
            BrokerError::Precondition(_) => 412,
            BrokerError::BadRequest(_) => 400,
            BrokerError::NotAllowed(_) => 405,
            BrokerError::Unauthenticated(_) => 401,
            BrokerError::Unauthorized(_) => 403,
            BrokerError::ServiceNotReady(_) | BrokerError::Meta(_) => 503,
            BrokerError::QuotaExceededHold(_) | BrokerError::QuotaExceededException(_) => 429,
            BrokerError::Storage(MlError::Terminated(_)) => 412,
            BrokerError::Storage(_) | BrokerError::Internal(_) => 500,
            BrokerError::Schema(SchemaError::Incompatible(_)) => 409,
            BrokerError::Schema(_) => 400,
        }
    }
}

impl From<magnetar_common::names::NameError> for BrokerError {
    fn from(e: magnetar_common::names::NameError) -> Self {
        BrokerError::BadRequest(e.to_string())
    }
}
