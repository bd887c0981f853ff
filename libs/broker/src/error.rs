//! Broker errors, and how each reaches a client: a Pulsar `ServerError` code
//! on the binary protocol, an HTTP status with `{"reason": …}` on the admin
//! API. `BrokerError::server_error` and `BrokerError::http_status` are the one
//! table of both; a new variant gets its row in each.
//!
//! A variant whose cause is another error keeps it as `#[source]` (logged
//! with the chain), and its message names what failed.

use magnetar_managed_ledger::MlError;
use magnetar_schema::SchemaError;
use magnetar_wire::ServerError;

/// Any error, as a cause kept for the log.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    /// A token that does not verify (bad signature, expired, malformed).
    #[error("authentication failed: {0}")]
    InvalidToken(#[source] magnetar_auth::AuthError),
    /// Valid credentials, not allowed to do this: `role` may not `refused`
    /// (e.g. "may not produce on persistent://a/b/c").
    #[error("not authorized: role {role:?} {refused}")]
    Unauthorized { role: String, refused: String },
    /// Another broker, asked on a client's behalf, did not answer.
    #[error("broker at {url}: {source}")]
    BrokerUnreachable {
        url: String,
        #[source]
        source: crate::peer::PeerError,
    },
    /// The broker's own Pulsar client (WebSocket sessions, REST produce)
    /// could not be made.
    #[error("the broker's own client could not start: {0}")]
    SelfClient(#[source] magnetar_client::ClientError),
    #[error("metadata service: {0}")]
    Meta(#[from] magnetar_meta_client::Error),
    #[error("storage: {0}")]
    Storage(#[from] MlError),
    /// A schema refused: not valid, or not compatible with the stored ones.
    #[error("{0}")]
    Schema(#[from] SchemaError),
    /// A fault of the broker or of the data it keeps, not of the request:
    /// `context` says what was being done (look at the broker's log).
    #[error("{context}: {source}")]
    Internal {
        context: String,
        #[source]
        source: BoxError,
    },
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

impl BrokerError {
    /// A fault of the broker while doing `context`, caused by `source`.
    pub fn internal(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        BrokerError::Internal {
            context: context.into(),
            source: source.into(),
        }
    }

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
            BrokerError::ServiceNotReady(_)
            | BrokerError::BrokerUnreachable { .. }
            | BrokerError::SelfClient(_) => ServerError::ServiceNotReady,
            BrokerError::QuotaExceededHold(_) => ServerError::ProducerBlockedQuotaExceededError,
            BrokerError::QuotaExceededException(_) => {
                ServerError::ProducerBlockedQuotaExceededException
            }
            BrokerError::Unauthenticated(_) | BrokerError::InvalidToken(_) => {
                ServerError::AuthenticationError
            }
            BrokerError::Unauthorized { .. } => ServerError::AuthorizationError,
            BrokerError::Conflict(_) | BrokerError::Precondition(_) => ServerError::NotAllowedError,
            BrokerError::Internal { .. } => ServerError::UnknownError,
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
            BrokerError::Unauthenticated(_) | BrokerError::InvalidToken(_) => 401,
            BrokerError::Unauthorized { .. } => 403,
            BrokerError::ServiceNotReady(_)
            | BrokerError::BrokerUnreachable { .. }
            | BrokerError::SelfClient(_)
            | BrokerError::Meta(_) => 503,
            BrokerError::QuotaExceededHold(_) | BrokerError::QuotaExceededException(_) => 429,
            BrokerError::Storage(MlError::Terminated(_)) => 412,
            BrokerError::Storage(_) | BrokerError::Internal { .. } => 500,
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

/// A client that broke the binary protocol. The connection answers with
/// `ProtocolError::server_error` and this message, then closes; the client's
/// library (or the code driving it) is at fault, not the broker.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{command} before CONNECT")]
    BeforeConnect { command: &'static str },
    #[error("second CONNECT")]
    SecondConnect,
    #[error("{command} without body")]
    MissingBody { command: &'static str },
    #[error("{command} without a payload")]
    MissingPayload { command: &'static str },
}

impl ProtocolError {
    /// The code a protocol error closes the connection with (the row of this
    /// type in the table above).
    pub fn server_error(&self) -> ServerError {
        ServerError::UnknownError
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_kept_and_shown() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let e = BrokerError::internal("binding the HTTP listener 0.0.0.0:8080", io);
        assert_eq!(
            e.to_string(),
            "binding the HTTP listener 0.0.0.0:8080: address in use"
        );
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.http_status(), 500);
        assert_eq!(e.server_error(), ServerError::UnknownError);
    }

    #[test]
    fn authorization_names_the_role() {
        let e = BrokerError::Unauthorized {
            role: "bob".into(),
            refused: "may not produce on persistent://a/b/c".into(),
        };
        assert_eq!(
            e.to_string(),
            "not authorized: role \"bob\" may not produce on persistent://a/b/c"
        );
        assert_eq!(e.http_status(), 403);
        assert_eq!(e.server_error(), ServerError::AuthorizationError);
    }
}
