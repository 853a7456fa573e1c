//! `cmm-agent rbac`: print the ClusterRole, Role(s) and bindings holding exactly what the agent
//! does on its cluster (cmm_installer::access), for `kubectl apply -f -`. The least-privilege
//! alternative to the notes' cluster-admin binding. Contacts nothing.

use cmm_installer::access::{rbac_manifests, Subject};
use cmm_installer::topology::Role;

use crate::cli::{GlobalArgs, RbacArgs, RoleArg};
use crate::exit::{Classify, ExitCode};
use crate::render::{self, Document};
use crate::settings::BadInput;

pub fn run(global: &GlobalArgs, args: RbacArgs) -> anyhow::Result<()> {
    let namespace = crate::settings::namespace(&args.namespace)?;
    let kube_metrics = args.kube_metrics.kube_metrics;
    let subject = Subject::parse(&args.subject)
        .ok_or_else(|| {
            BadInput(format!(
                "--subject / CMM_RBAC_SUBJECT {:?} is not a subject: write User:NAME, \
                 Group:NAME or ServiceAccount:NAMESPACE:NAME",
                args.subject
            ))
        })
        .classify(ExitCode::Usage)?;
    let role = match args.role.role {
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
    let topology = args.topology.topology.into();
    let mut objects = rbac_manifests(role, &namespace, kube_metrics, topology, &subject);
    if let Some(r) = &readers {
        objects.extend(cmm_installer::access::ca_reader_manifests(
            &namespace, topology, r,
        ));
    }
    // The human form: YAML documents for `kubectl apply -f -`, under a header saying what.
    let mut text = String::new();
    text.push_str(&format!(
        "# cmm-agent rbac --role {} --namespace {}{}: exactly what cmm-agent does on \
         this cluster.\n# Apply as a cluster admin: cmm-agent rbac ... | kubectl apply -f -\n",
        match role {
            Role::Cluster => "cluster",
            Role::Central => "central",
        },
        namespace,
        if kube_metrics { " --kube-metrics" } else { "" }
    ));
    for o in &objects {
        text.push_str("---\n");
        text.push_str(&serde_saphyr::to_string(o)?);
    }
    let json = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    render::emit(global.output, &Document { json, text })
}
