//! CONNECT and AUTH_RESPONSE: who the client is, and keeping its token fresh.

use std::time::Duration;

use magnetar_wire::pb;

use super::{error, Conn, PROTOCOL_VERSION};
use crate::error::{BrokerError, ProtocolError, Result};

/// How long a client has to answer an AUTH_CHALLENGE with a fresh token.
const AUTH_REFRESH_GRACE: Duration = Duration::from_secs(10);

impl Conn {
    pub(super) fn connect(
        &mut self,
        c: pb::CommandConnect,
    ) -> std::result::Result<(), ProtocolError> {
        if self.connected {
            return Err(ProtocolError::SecondConnect);
        }
        self.connected = true;
        if self.svc.auth_enabled() {
            if let Err(e) = self.authenticate(&c) {
                tracing::info!(peer = %self.peer, error = %e, "authentication failed");
                // Pulsar answers a failed CONNECT with request id -1.
                self.out.send(error(u64::MAX, &e));
                self.close_now = true;
                return Ok(());
            }
        }
        let version = c.protocol_version.unwrap_or(0).min(PROTOCOL_VERSION);
        tracing::debug!(peer = %self.peer, client = %c.client_version, version, "connected");
        self.out.send(pb::CommandConnected {
            server_version: format!("Magnetar {}", env!("CARGO_PKG_VERSION")),
            protocol_version: Some(version),
            max_message_size: Some(self.svc.cfg().max_message_size as i32),
            feature_flags: Some(pb::FeatureFlags::default()),
        });
        Ok(())
    }

    /// CONNECT's credentials, by the method the client names.
    fn authenticate(&mut self, c: &pb::CommandConnect) -> Result<()> {
        let token = c
            .auth_data
            .as_deref()
            .map(|d| String::from_utf8_lossy(d).into_owned());
        match c.auth_method_name.as_deref() {
            None | Some("token") => self.verify_token(token.as_deref()),
            Some("tls") => self.verify_certificate(),
            Some(other) => Err(BrokerError::Unauthenticated(format!(
                "unsupported authentication method {other:?}; use \"token\"{}",
                if self.svc.tls_auth_enabled() {
                    " or \"tls\""
                } else {
                    ""
                }
            ))),
        }
    }

    /// The answer to an AUTH_CHALLENGE: a fresh token for the same role.
    pub(super) fn auth_response(&mut self, c: pb::CommandAuthResponse) {
        let token = c
            .response
            .and_then(|r| r.auth_data)
            .map(|d| String::from_utf8_lossy(&d).into_owned());
        let before = self.role.clone();
        match self.verify_token(token.as_deref()) {
            Ok(()) if self.role == before => self.challenged = false,
            Ok(()) => {
                let e = BrokerError::Unauthenticated("a refreshed token must keep the role".into());
                self.out.send(error(0, &e));
                self.close_now = true;
            }
            Err(e) => {
                self.out.send(error(0, &e));
                self.close_now = true;
            }
        }
    }

    /// Checks a token and takes its role; the token's expiry is when the
    /// client is next asked for a fresh one.
    fn verify_token(&mut self, token: Option<&str>) -> Result<()> {
        let Some(auth) = &self.svc.cfg().auth else {
            return Ok(());
        };
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| BrokerError::Unauthenticated("no token given".into()))?;
        let id = auth
            .verifier
            .verify(token)
            .map_err(BrokerError::InvalidToken)?;
        self.auth_deadline = refresh_due(id.expires_at, magnetar_auth::now_secs());
        self.role = Some(id.role);
        Ok(())
    }

    /// TLS authentication: the role is the subject CN of the client
    /// certificate the TLS handshake verified.
    fn verify_certificate(&mut self) -> Result<()> {
        if !self.svc.tls_auth_enabled() {
            return Err(BrokerError::Unauthenticated(
                "TLS authentication is not enabled on this broker (--tls-auth)".into(),
            ));
        }
        let role = self.transport.cert_role.clone().ok_or_else(|| {
            BrokerError::Unauthenticated(
                "TLS authentication needs a client certificate with a subject CN, over pulsar+ssl"
                    .into(),
            )
        })?;
        self.role = Some(role);
        Ok(())
    }

    /// The token ran out: ask for a fresh one, or — if already asked and
    /// not answered in time — give up. False closes the connection.
    pub(super) fn auth_expired(&mut self) -> bool {
        if self.challenged {
            let e = BrokerError::Unauthenticated("the token expired and was not refreshed".into());
            self.out.send(error(0, &e));
            return false;
        }
        self.challenged = true;
        self.auth_deadline = Some(tokio::time::Instant::now() + AUTH_REFRESH_GRACE);
        self.out.send(pb::CommandAuthChallenge {
            server_version: Some(format!("Magnetar {}", env!("CARGO_PKG_VERSION"))),
            challenge: Some(pb::AuthData {
                auth_method_name: Some("token".into()),
                auth_data: Some(b"refresh".to_vec()),
            }),
            protocol_version: Some(PROTOCOL_VERSION),
        });
        true
    }
}

/// When a client must show a fresh token: when its token expires
/// (`expires_at`, seconds since the epoch, judged at `now_secs`); never for a
/// token without expiry. A token that expires in centuries is checked again
/// in a year (an Instant that far out would overflow).
fn refresh_due(expires_at: Option<u64>, now_secs: u64) -> Option<tokio::time::Instant> {
    expires_at.map(|exp| {
        let left = exp.saturating_sub(now_secs).min(365 * 24 * 3600);
        tokio::time::Instant::now() + Duration::from_secs(left)
    })
}

#[cfg(test)]
mod tests {
    use super::super::auth_due;
    use super::*;
    use tokio::time::{timeout, Instant};

    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    #[tokio::test(start_paused = true)]
    async fn a_token_is_due_when_it_expires() {
        let now = 1_000_000;
        let due = refresh_due(Some(now + 60), now);
        let early = timeout(Duration::from_millis(59_999), auth_due(due)).await;
        assert!(early.is_err(), "due before the token expired");
        let start = Instant::now();
        auth_due(due).await;
        assert_eq!(start.elapsed(), Duration::from_millis(1));
        // Already expired: due at once.
        assert_eq!(refresh_due(Some(now - 5), now), Some(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_without_expiry_is_never_due_and_a_far_one_in_a_year() {
        let now = 1_000_000;
        let never = timeout(10 * YEAR, auth_due(refresh_due(None, now))).await;
        assert!(never.is_err());
        let far = refresh_due(Some(u64::MAX), now).unwrap();
        assert_eq!(far - Instant::now(), YEAR);
    }
}
