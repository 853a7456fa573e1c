//! What the install needs to be allowed to do, and what to tell the user when it is not.
//! The permissions are asked of the API server itself (SelfSubjectAccessReview), so RBAC,
//! webhooks and cloud IAM mappings (EKS aws-auth / access entries) all answer as they would for
//! helm. CMM never grants anything; it prints the command an admin would run.

use serde::Serialize;

use crate::access::Permission;
use crate::detect::{EnvKind, Environment};

/// Every permission bootstrap of `role` needs, from the one table of its reads and writes
/// (crate::access).
pub fn required_permissions(
    role: crate::topology::Role,
    namespace: &str,
    kube_metrics: bool,
) -> Vec<Permission> {
    required_permissions_in(
        role,
        namespace,
        kube_metrics,
        crate::topology::Topology::Pull,
    )
}

/// [`required_permissions`] in `topology`.
pub fn required_permissions_in(
    role: crate::topology::Role,
    namespace: &str,
    kube_metrics: bool,
    topology: crate::topology::Topology,
) -> Vec<Permission> {
    crate::access::permissions(
        &crate::access::bootstrap_in(role, kube_metrics, topology),
        namespace,
    )
}

/// One line of the preflight report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// The RBAC checks from the reviews' answers (`allowed` per permission, in the same order).
pub fn rbac_checks(required: &[Permission], allowed: &[(bool, String)]) -> Vec<Check> {
    required
        .iter()
        .zip(allowed)
        .map(|(p, (ok, reason))| Check {
            check: format!("rbac: {}", p.describe()),
            ok: *ok,
            detail: if *ok {
                "allowed".to_owned()
            } else if reason.is_empty() {
                "denied".to_owned()
            } else {
                format!("denied: {reason}")
            },
        })
        .collect()
}

/// The command an admin runs to let `user` install CMM. On EKS (where the seed met this) the
/// installing IAM identity usually maps to a user without cluster rights; the seed's fix is a
/// cluster-admin binding. A ServiceAccount identity needs `--serviceaccount` instead of `--user`.
pub fn rbac_fix(env: &Environment, user: Option<&str>) -> String {
    let subject = match user {
        Some(u) => match u.strip_prefix("system:serviceaccount:") {
            Some(sa) => format!("--serviceaccount={sa}"),
            None => format!("--user={u}"),
        },
        None => "--user=<you>".to_owned(),
    };
    let cmd = format!(
        "kubectl create clusterrolebinding cluster-admin-binding --clusterrole=cluster-admin {subject}"
    );
    let least = format!(
        "; or, least privilege: `cmm-agent rbac --subject {} | kubectl apply -f -`",
        match user {
            Some(u) => match u.strip_prefix("system:serviceaccount:") {
                Some(sa) => format!("ServiceAccount:{sa}"),
                None => format!("User:{u}"),
            },
            None => "User:<you>".to_owned(),
        }
    );
    if env.is(EnvKind::Eks) {
        format!(
            "on EKS the installing identity must be a cluster admin; an admin runs: {cmd} \
             (and, with EKS access entries, grants AmazonEKSClusterAdminPolicy to that IAM principal){least}"
        )
    } else {
        format!("ask a cluster admin to grant the missing permissions, e.g.: {cmd}{least}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_needs_crds_webhooks_and_monitoring_objects() {
        use crate::topology::Role;
        let all: Vec<String> = required_permissions(Role::Cluster, "monitor", false)
            .iter()
            .map(Permission::describe)
            .collect();
        let with_metrics: Vec<String> = required_permissions(Role::Cluster, "monitor", true)
            .iter()
            .map(Permission::describe)
            .collect();
        assert!(!all.iter().any(|d| d.contains("kube-system")));
        assert!(with_metrics.contains(&"create services in namespace kube-system".to_owned()));
        for needed in [
            "create customresourcedefinitions.apiextensions.k8s.io (cluster-wide)",
            "create clusterrolebindings.rbac.authorization.k8s.io (cluster-wide)",
            "create namespaces (cluster-wide)",
            "create mutatingwebhookconfigurations.admissionregistration.k8s.io (cluster-wide)",
            "create daemonsets.apps in namespace monitor",
            "patch servicemonitors.monitoring.coreos.com in namespace monitor",
            "create secrets in namespace monitor",
            "list persistentvolumeclaims in namespace monitor",
            "list persistentvolumes (cluster-wide)",
            "list statefulsets.apps in namespace monitor",
        ] {
            assert!(all.iter().any(|d| d == needed), "missing {needed}");
        }
    }

    #[test]
    fn the_fix_names_the_caller() {
        let eks = Environment {
            kinds: vec![EnvKind::Eks],
            evidence: vec![],
        };
        let fix = rbac_fix(&eks, Some("arn:aws:iam::111122223333:user/alice"));
        assert!(
            fix.contains("kubectl create clusterrolebinding cluster-admin-binding --clusterrole=cluster-admin --user=arn:aws:iam::111122223333:user/alice"),
            "{fix}"
        );
        let fix = rbac_fix(
            &Environment::default(),
            Some("system:serviceaccount:ci:deployer"),
        );
        assert!(fix.contains("--serviceaccount=ci:deployer"), "{fix}");
    }
}
