//! `admin tenants ...`.

use super::*;

#[derive(Subcommand)]
pub(super) enum TenantsCmd {
    /// Names of the tenants.
    List,
    /// A tenant's admin roles and allowed clusters.
    Get {
        #[arg(value_parser = parse_tenant)]
        tenant: String,
    },
    /// A new tenant (allowed in every cluster unless --allowed-clusters).
    Create {
        #[arg(value_parser = parse_tenant)]
        tenant: String,
        /// Roles that administer the tenant, comma-separated.
        #[arg(long, short = 'r', value_delimiter = ',')]
        admin_roles: Vec<String>,
        /// Clusters the tenant may use, comma-separated.
        #[arg(long, short = 'c', value_delimiter = ',')]
        allowed_clusters: Vec<String>,
    },
    /// Changes a tenant; what is not given is kept.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)))]
    Update {
        #[arg(value_parser = parse_tenant)]
        tenant: String,
        /// Roles that administer the tenant, comma-separated ("" for none).
        #[arg(long, short = 'r', value_delimiter = ',', group = "change")]
        admin_roles: Option<Vec<String>>,
        /// Clusters the tenant may use, comma-separated.
        #[arg(long, short = 'c', value_delimiter = ',', group = "change")]
        allowed_clusters: Option<Vec<String>>,
    },
    /// Deletes a tenant without namespaces.
    Delete {
        #[arg(value_parser = parse_tenant)]
        tenant: String,
    },
}

pub(super) fn plan_tenants(c: TenantsCmd) -> Result<Plan, String> {
    let path = |t: &str| format!("/admin/v2/tenants/{}", enc(t));
    match c {
        TenantsCmd::List => get("/admin/v2/tenants".into(), Show::List("TENANT")),
        TenantsCmd::Get { tenant } => get(path(&tenant), Show::Doc),
        TenantsCmd::Create {
            tenant,
            admin_roles,
            allowed_clusters,
        } => Ok(Plan::CreateTenant {
            tenant,
            admin_roles: non_empty(admin_roles),
            allowed_clusters: non_empty(allowed_clusters),
        }),
        TenantsCmd::Update {
            tenant,
            admin_roles,
            allowed_clusters,
        } => Ok(Plan::UpdateTenant {
            tenant,
            admin_roles: admin_roles.map(non_empty),
            allowed_clusters: allowed_clusters.map(non_empty),
        }),
        TenantsCmd::Delete { tenant } => done(
            Method::DELETE,
            path(&tenant),
            None,
            format!("Deleted tenant {tenant}"),
        ),
    }
}
