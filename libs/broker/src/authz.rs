//! Who may do what, when token authentication is on (`BrokerConfig::auth`).
//!
//! - superusers (config) may do everything;
//! - a tenant's admin roles (`adminRoles`) may administer the tenant and
//!   produce and consume on all of it;
//! - other roles may produce or consume where they were granted that action
//!   on the namespace or on the topic (`auth_policies`, Pulsar's layout).
//!
//! With authentication off, every caller is allowed (`role = None`).

use magnetar_common::names::{NamespaceName, TopicName};

use crate::error::{BrokerError, Result};
use crate::resources::Policies;
use crate::service::BrokerService;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Produce,
    Consume,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Produce => "produce",
            Action::Consume => "consume",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "produce" => Some(Action::Produce),
            "consume" => Some(Action::Consume),
            _ => None,
        }
    }
}

/// Whether `policies` grant `role` the action on `topic`.
pub fn granted(p: &Policies, role: &str, topic: &TopicName, action: Action) -> bool {
    let has = |actions: Option<&std::collections::BTreeSet<String>>| {
        actions.is_some_and(|a| a.contains(action.name()))
    };
    // A partition is covered by grants on its partitioned topic.
    let base = topic.base().to_string();
    has(p.auth_policies.namespace_auth.get(role))
        || [topic.to_string(), base].iter().any(|t| {
            has(p
                .auth_policies
                .destination_auth
                .get(t)
                .and_then(|roles| roles.get(role)))
        })
}

/// `role` (none: the anonymous role "") may not do what `refused` says.
fn unauthorized(role: Option<&str>, refused: String) -> BrokerError {
    BrokerError::Unauthorized {
        role: role.unwrap_or_default().to_string(),
        refused,
    }
}

impl BrokerService {
    pub fn auth_enabled(&self) -> bool {
        self.cfg().auth.is_some()
    }

    /// The role a token proves; `Ok(None)` when authentication is off.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Option<String>> {
        let Some(auth) = &self.cfg().auth else {
            return Ok(None);
        };
        let token = token.ok_or_else(|| BrokerError::Unauthenticated("no token given".into()))?;
        auth.verifier
            .verify(token)
            .map(|id| Some(id.role))
            .map_err(BrokerError::InvalidToken)
    }

    pub fn is_superuser(&self, role: Option<&str>) -> bool {
        match (&self.cfg().auth, role) {
            (None, _) => true,
            (Some(a), Some(r)) => a.superusers.iter().any(|s| s == r),
            (Some(_), None) => false,
        }
    }

    /// Superuser, or an admin role of `tenant`.
    pub async fn is_tenant_admin(&self, role: Option<&str>, tenant: &str) -> Result<bool> {
        if self.is_superuser(role) {
            return Ok(true);
        }
        let Some(role) = role else { return Ok(false) };
        Ok(self
            .resources()
            .tenant(tenant)
            .await?
            .is_some_and(|(t, _)| t.admin_roles.iter().any(|r| r == role)))
    }

    pub fn check_superuser(&self, role: Option<&str>) -> Result<()> {
        if self.is_superuser(role) {
            Ok(())
        } else {
            Err(unauthorized(role, "is not a superuser".into()))
        }
    }

    pub async fn check_tenant_admin(&self, role: Option<&str>, tenant: &str) -> Result<()> {
        if self.is_tenant_admin(role, tenant).await? {
            Ok(())
        } else {
            Err(unauthorized(
                role,
                format!("may not administer tenant {tenant}"),
            ))
        }
    }

    /// Whether `role` may do `action` on `topic`.
    pub async fn allowed(
        &self,
        role: Option<&str>,
        action: Action,
        topic: &TopicName,
    ) -> Result<bool> {
        self.allowed_one_of(role, &[action], topic).await
    }

    /// Whether `role` may do any of `actions` on `topic` (one read of the
    /// tenant and one of the policies, whatever the number of actions).
    async fn allowed_one_of(
        &self,
        role: Option<&str>,
        actions: &[Action],
        topic: &TopicName,
    ) -> Result<bool> {
        if self.is_tenant_admin(role, &topic.namespace.tenant).await? {
            return Ok(true);
        }
        let Some(role) = role else { return Ok(false) };
        Ok(self
            .resources()
            .policies(&topic.namespace)
            .await?
            .is_some_and(|(p, _)| actions.iter().any(|a| granted(&p, role, topic, *a))))
    }

    pub async fn check(&self, role: Option<&str>, action: Action, topic: &TopicName) -> Result<()> {
        if self.allowed(role, action, topic).await? {
            Ok(())
        } else {
            Err(unauthorized(
                role,
                format!("may not {} on {topic}", action.name()),
            ))
        }
    }

    /// Lookups and metadata: either action will do.
    pub async fn check_any(&self, role: Option<&str>, topic: &TopicName) -> Result<()> {
        if self
            .allowed_one_of(role, &[Action::Produce, Action::Consume], topic)
            .await?
        {
            Ok(())
        } else {
            Err(unauthorized(role, format!("has no permission on {topic}")))
        }
    }

    /// Listing a namespace's topics: any grant in it.
    pub async fn check_namespace_access(
        &self,
        role: Option<&str>,
        ns: &NamespaceName,
    ) -> Result<()> {
        if self.is_tenant_admin(role, &ns.tenant).await? {
            return Ok(());
        }
        let any = match (role, self.resources().policies(ns).await?) {
            (Some(r), Some((p, _))) => {
                p.auth_policies.namespace_auth.contains_key(r)
                    || p.auth_policies
                        .destination_auth
                        .values()
                        .any(|roles| roles.contains_key(r))
            }
            _ => false,
        };
        if any {
            Ok(())
        } else {
            Err(unauthorized(role, format!("has no permission in {ns}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_on_namespace_topic_and_partitioned_parent() {
        let mut p = Policies::default();
        let t = TopicName::parse("persistent://a/b/t").unwrap();
        assert!(!granted(&p, "r", &t, Action::Produce));
        p.auth_policies
            .namespace_auth
            .insert("r".into(), ["consume".to_string()].into());
        assert!(granted(&p, "r", &t, Action::Consume));
        assert!(!granted(&p, "r", &t, Action::Produce));
        p.auth_policies.destination_auth.insert(
            "persistent://a/b/parted".into(),
            [("w".to_string(), ["produce".to_string()].into())].into(),
        );
        let part = TopicName::parse("persistent://a/b/parted-partition-3").unwrap();
        assert!(granted(&p, "w", &part, Action::Produce));
        assert!(!granted(&p, "w", &t, Action::Produce));
        assert!(!granted(&p, "x", &part, Action::Produce));
    }
}
