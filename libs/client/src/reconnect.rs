//! When a broker closes a producer or consumer (its topic was unloaded or
//! moved, the broker is shutting down, the connection dropped), the handle
//! looks the topic up again and re-attaches, retrying with backoff, as
//! Pulsar's clients do. Errors that another attempt cannot fix end it.

use std::time::Duration;

use magnetar_wire::pb::ServerError;
use tokio::time::Instant;

use crate::error::ClientError;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Whether re-attaching might succeed later.
pub(crate) fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::InvalidConfig(_) | ClientError::Closed | ClientError::EndOfTopic => false,
        ClientError::Server { .. } => !matches!(
            e.server_error(),
            Some(
                ServerError::TopicNotFound
                    | ServerError::AuthenticationError
                    | ServerError::AuthorizationError
                    | ServerError::TopicTerminatedError
                    | ServerError::ProducerBlockedQuotaExceededException
                    | ServerError::InvalidTopicName
                    | ServerError::IncompatibleSchema
                    | ServerError::UnsupportedVersionError
                    | ServerError::SubscriptionNotFound
            )
        ),
        _ => true,
    }
}

/// Delays between attempts, growing to [`MAX_BACKOFF`], until `deadline`.
pub(crate) struct Backoff {
    next: Duration,
    deadline: Instant,
}

impl Backoff {
    pub(crate) fn until(deadline: Instant) -> Backoff {
        Backoff {
            next: FIRST_BACKOFF,
            deadline,
        }
    }

    /// Sleeps before the next attempt; `false` when time is up.
    pub(crate) async fn wait(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.next.min(self.deadline - now)).await;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_worth_retrying() {
        assert!(retryable(&ClientError::Disconnected));
        assert!(retryable(&ClientError::Server {
            code: ServerError::ServiceNotReady as i32,
            message: String::new()
        }));
        assert!(retryable(&ClientError::Server {
            code: ServerError::ProducerBlockedQuotaExceededError as i32,
            message: String::new()
        }));
        assert!(!retryable(&ClientError::Server {
            code: ServerError::TopicTerminatedError as i32,
            message: String::new()
        }));
        assert!(!retryable(&ClientError::Closed));
    }

    #[tokio::test]
    async fn backoff_grows_and_stops_at_the_deadline() {
        let start = Instant::now();
        let mut b = Backoff::until(start + Duration::from_millis(500));
        let mut waits = 0;
        while b.wait().await {
            waits += 1;
        }
        // 0.1 + 0.2 + 0.2 (cut at the deadline)
        assert_eq!(waits, 3);
        assert!(Instant::now() >= start + Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_its_cap_and_ends_exactly_at_the_deadline() {
        let start = Instant::now();
        let mut b = Backoff::until(start + Duration::from_secs(10));
        let mut slept = Vec::new();
        let mut at = start;
        while b.wait().await {
            slept.push((Instant::now() - at).as_millis());
            at = Instant::now();
        }
        // 100 ms doubling to the 2 s cap; the last wait is cut at the deadline
        // (0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 2 + 2 + 2 = 9.1, then 0.9).
        assert_eq!(slept, [100, 200, 400, 800, 1600, 2000, 2000, 2000, 900]);
        assert_eq!(Instant::now(), start + Duration::from_secs(10));
    }
}
