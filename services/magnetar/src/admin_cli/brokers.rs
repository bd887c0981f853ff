//! `admin brokers ...`.

use super::*;

#[derive(Subcommand)]
pub(super) enum BrokersCmd {
    /// Live brokers of a cluster.
    List { cluster: String },
    /// The broker that places bundles.
    LeaderBroker,
    /// Bundles a broker owns.
    OwnedNamespaces { cluster: String, broker: String },
}

pub(super) fn plan_brokers(c: BrokersCmd) -> Result<Plan, String> {
    match c {
        BrokersCmd::List { cluster } => get(
            format!("/admin/v2/brokers/{}", enc(&cluster)),
            Show::List("BROKER"),
        ),
        BrokersCmd::LeaderBroker => get("/admin/v2/brokers/leaderBroker".into(), Show::Doc),
        BrokersCmd::OwnedNamespaces { cluster, broker } => get(
            format!(
                "/admin/v2/brokers/{}/{}/ownedNamespaces",
                enc(&cluster),
                enc(&broker)
            ),
            Show::Map("BUNDLE", "STATUS"),
        ),
    }
}
