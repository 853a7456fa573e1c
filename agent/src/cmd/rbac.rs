//! `cmm-agent rbac`: print the ClusterRole, Role(s) and bindings holding exactly what the agent
//! does on its cluster (cmm_installer::access), for `kubectl apply -f -`. The least-privilege
//! alternative to the notes' cluster-admin binding. Contacts nothing.

use clap::Args;
use cmm_installer::access::{rbac_manifests, Subject};
use cmm_installer::topology::Role;

use crate::cli::{GlobalArgs, Output, RoleArg};
use crate::exit::{Classify, ExitCode};
use crate::settings::{check_namespace, BadInput};

#[derive(Debug, Args)]
pub struct RbacArgs {
    /// What the cluster is in CMM.
    #[arg(long, env = "CMM_ROLE", value_enum)]
    pub role: RoleArg,
    /// Namespace CMM installs into.
    #[arg(long, env = "CMM_NAMESPACE")]
    pub namespace: String,
    /// Also grant what --kube-metrics needs (Services in kube-system).
    #[arg(long, env = "CMM_KUBE_METRICS")]
    pub kube_metrics: bool,
    /// Who is granted: User:NAME, Group:NAME or ServiceAccount:NAMESPACE:NAME (e.g. the IAM
    /// user an EKS access entry maps, or the agent host's service account).
    #[arg(long, env = "CMM_RBAC_SUBJECT")]
    pub subject: String,
    /// With --role central: also let this subject (the clusters' agents, as the central
    /// cluster knows them) read the CMM CA and Grafana's client certificate, by name and
    /// nothing else: what bootstrap, register and check --repair on a cluster host read there.
    #[arg(long, env = "CMM_RBAC_CA_READER")]
    pub ca_reader: Option<String>,
    /// The fleet's topology: what the chart renders differs (a receiver on the central node in
    /// push, Thanos Query's NetworkPolicy in thanos, an agent's CR on the clusters), and in
    /// thanos the clusters' agents also patch their key of the central endpoints ConfigMap.
    #[arg(long, env = "CMM_TOPOLOGY", value_enum, default_value_t = crate::cli::TopologyArg::Pull)]
    pub topology: crate::cli::TopologyArg,
}

pub fn run(global: &GlobalArgs, args: RbacArgs) -> anyhow::Result<()> {
    check_namespace(&args.namespace)?;
    let subject = Subject::parse(&args.subject)
        .ok_or_else(|| {
            BadInput(format!(
                "--subject / CMM_RBAC_SUBJECT {:?} is not a subject: write User:NAME, \
                 Group:NAME or ServiceAccount:NAMESPACE:NAME",
                args.subject
            ))
        })
        .classify(ExitCode::Usage)?;
    let role = match args.role {
        RoleArg::Cluster => Role::Cluster,
        RoleArg::Central => Role::Central,
    };
    let parse = |raw: &str, setting: &str| {
        Subject::parse(raw)
            .ok_or_else(|| {
                BadInput(format!(
                    "{setting} {raw:?} is not a subject: write User:NAME, Group:NAME or \
                     ServiceAccount:NAMESPACE:NAME"
                ))
            })
            .classify(ExitCode::Usage)
    };
    let readers =
        match (&args.ca_reader, role) {
            (None, _) => None,
            (Some(raw), Role::Central) => Some(parse(raw, "--ca-reader / CMM_RBAC_CA_READER")?),
            (Some(_), Role::Cluster) => return Err(BadInput(
                "--ca-reader / CMM_RBAC_CA_READER is for the central cluster, where the CMM CA \
                 is kept: use it with --role central"
                    .into(),
            ))
            .classify(ExitCode::Usage),
        };
    let topology = args.topology.into();
    let mut objects = rbac_manifests(role, &args.namespace, args.kube_metrics, topology, &subject);
    if let Some(r) = &readers {
        objects.extend(cmm_installer::access::ca_reader_manifests(
            &args.namespace,
            topology,
            r,
        ));
    }
    let mut text = String::new();
    match global.output {
        Output::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
            return crate::output::json(&list);
        }
        Output::Human => {
            text.push_str(&format!(
                "# cmm-agent rbac --role {} --namespace {}{}: exactly what cmm-agent does on \
                 this cluster.\n# Apply as a cluster admin: cmm-agent rbac ... | kubectl apply -f -\n",
                match role {
                    Role::Cluster => "cluster",
                    Role::Central => "central",
                },
                args.namespace,
                if args.kube_metrics { " --kube-metrics" } else { "" }
            ));
            for o in &objects {
                text.push_str("---\n");
                text.push_str(&serde_yaml::to_string(o)?);
            }
        }
    }
    crate::output::print(&text)
}
