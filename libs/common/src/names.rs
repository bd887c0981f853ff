//! Names of namespaces and topics, as Pulsar spells them.
//!
//! A topic is `persistent://tenant/namespace/local-name`; clients may also say
//! `tenant/namespace/local-name` or just `local-name` (then `public/default`).
//! A partition of a partitioned topic is the topic `local-name-partition-N`.

use std::fmt;

pub const DEFAULT_TENANT: &str = "public";
pub const DEFAULT_NAMESPACE: &str = "default";
pub const PARTITION_SUFFIX: &str = "-partition-";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {name:?}: {why}")]
pub struct NameError {
    pub name: String,
    pub why: String,
}

fn bad<T>(name: &str, why: impl Into<String>) -> Result<T, NameError> {
    Err(NameError {
        name: name.to_string(),
        why: why.into(),
    })
}

/// Checks one path segment (tenant, namespace, or topic local name).
pub fn check_segment(what: &str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return bad(s, format!("empty {what}"));
    }
    if s.len() > 512 {
        return bad(s, format!("{what} longer than 512 bytes"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.=:%".contains(c);
    if !s.chars().all(allowed) {
        return bad(
            s,
            format!("{what} may hold only letters, digits and - _ . = : %"),
        );
    }
    Ok(())
}

/// `tenant/namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceName {
    pub tenant: String,
    pub namespace: String,
}

impl NamespaceName {
    pub fn new(tenant: &str, namespace: &str) -> Result<Self, NameError> {
        check_segment("tenant", tenant)?;
        check_segment("namespace", namespace)?;
        Ok(Self {
            tenant: tenant.to_string(),
            namespace: namespace.to_string(),
        })
    }

    pub fn parse(s: &str) -> Result<Self, NameError> {
        match s.split('/').collect::<Vec<_>>().as_slice() {
            [t, n] => Self::new(t, n),
            _ => bad(s, "a namespace is tenant/namespace"),
        }
    }
}

impl fmt::Display for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.namespace)
    }
}

/// A persistent topic (possibly one partition of a partitioned topic).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName {
    pub namespace: NamespaceName,
    pub local: String,
}

impl TopicName {
    pub fn new(namespace: NamespaceName, local: &str) -> Result<Self, NameError> {
        check_segment("topic", local)?;
        Ok(Self {
            namespace,
            local: local.to_string(),
        })
    }

    /// Parses any of Pulsar's spellings. Non-persistent topics are refused.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let rest = if let Some(r) = s.strip_prefix("persistent://") {
            r
        } else if s.starts_with("non-persistent://") {
            return bad(s, "non-persistent topics are not supported");
        } else if s.contains("://") {
            return bad(s, "unknown topic domain");
        } else {
            match s.split('/').count() {
                1 => return Self::new(NamespaceName::new(DEFAULT_TENANT, DEFAULT_NAMESPACE)?, s),
                3 => s,
                _ => return bad(s, "a short topic name is name or tenant/namespace/name"),
            }
        };
        let mut parts = rest.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(t), Some(n), Some(local)) => Self::new(NamespaceName::new(t, n)?, local),
            _ => bad(s, "expected persistent://tenant/namespace/topic"),
        }
    }

    /// The partition index if this is `...-partition-N`.
    pub fn partition_index(&self) -> Option<u32> {
        let i = self.local.rfind(PARTITION_SUFFIX)?;
        self.local[i + PARTITION_SUFFIX.len()..].parse().ok()
    }

    /// The partitioned topic this is a partition of (or itself).
    pub fn base(&self) -> TopicName {
        match self.local.rfind(PARTITION_SUFFIX) {
            Some(i) if self.partition_index().is_some() => TopicName {
                namespace: self.namespace.clone(),
                local: self.local[..i].to_string(),
            },
            _ => self.clone(),
        }
    }

    pub fn partition(&self, index: u32) -> TopicName {
        TopicName {
            namespace: self.namespace.clone(),
            local: format!("{}{PARTITION_SUFFIX}{index}", self.local),
        }
    }

    /// The managed ledger's name: `tenant/namespace/persistent/local`.
    pub fn managed_ledger_name(&self) -> String {
        format!("{}/persistent/{}", self.namespace, self.local)
    }

    /// The inverse of `managed_ledger_name`.
    pub fn from_managed_ledger_name(s: &str) -> Option<TopicName> {
        let mut p = s.splitn(4, '/');
        let (t, n, d, local) = (p.next()?, p.next()?, p.next()?, p.next()?);
        if d != "persistent" {
            return None;
        }
        TopicName::new(NamespaceName::new(t, n).ok()?, local).ok()
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "persistent://{}/{}", self.namespace, self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        let full = TopicName::parse("persistent://t/ns/a").unwrap();
        assert_eq!(full.to_string(), "persistent://t/ns/a");
        assert_eq!(
            TopicName::parse("a").unwrap().to_string(),
            "persistent://public/default/a"
        );
        assert_eq!(TopicName::parse("t/ns/a").unwrap(), full);
        assert!(TopicName::parse("non-persistent://t/ns/a").is_err());
        assert!(TopicName::parse("persistent://t/ns").is_err());
        assert!(TopicName::parse("t/a").is_err());
        assert!(TopicName::parse("persistent://t/ns/a b").is_err());
        assert!(TopicName::parse("").is_err());
    }

    #[test]
    fn partitions_round_trip() {
        let t = TopicName::parse("persistent://t/ns/orders").unwrap();
        let p = t.partition(3);
        assert_eq!(p.local, "orders-partition-3");
        assert_eq!(p.partition_index(), Some(3));
        assert_eq!(p.base(), t);
        assert_eq!(t.partition_index(), None);
        let ml = p.managed_ledger_name();
        assert_eq!(ml, "t/ns/persistent/orders-partition-3");
        assert_eq!(TopicName::from_managed_ledger_name(&ml), Some(p));
    }
}
