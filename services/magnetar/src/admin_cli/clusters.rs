//! `admin clusters ...`.

use super::*;

#[derive(Subcommand)]
pub(super) enum ClustersCmd {
    /// Names of the clusters.
    List,
    /// A cluster's service URLs.
    Get { cluster: String },
}

pub(super) fn plan_clusters(c: ClustersCmd) -> Result<Plan, String> {
    match c {
        ClustersCmd::List => get("/admin/v2/clusters".into(), Show::List("CLUSTER")),
        ClustersCmd::Get { cluster } => {
            get(format!("/admin/v2/clusters/{}", enc(&cluster)), Show::Doc)
        }
    }
}
