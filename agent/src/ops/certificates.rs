//! The TLS Secrets a run keeps, gathered and decided in `cmm_installer::tls`: bootstrap issues
//! them under the run lock before helm (the proxy's pod cannot start without its Secret; the
//! central role keeps the CA every cluster's certificate comes from), and check's repair
//! renews a cluster's when `tls::judge` says it is due.

use cmm_installer::bootstrap::{Options, TlsStep};
use cmm_installer::kube::Connected;
use cmm_installer::tls::CentralPki;
use cmm_installer::topology::{self, Role, Topology};

use crate::exit::{installer_class, Classify};
use crate::ops::endpoint::advertised_sans;
use crate::settings::BootstrapSettings;

/// Issue or keep the Secrets of `opts.role` (and, for the central role, the topology's own).
/// The TLS Secrets, under the lock and before helm: the proxy's pod cannot start without its
/// Secret, and the central role keeps the CA every cluster's certificate comes from.
pub async fn ensure(
    conn: &Connected,
    opts: &Options,
    s: &BootstrapSettings,
    pki: Option<&CentralPki>,
) -> anyhow::Result<Vec<TlsStep>> {
    let now = std::time::SystemTime::now();
    match (opts.role, pki) {
        (Role::Central, _) => {
            let (pki, actions) = cmm_installer::tls::ensure_central(
                conn,
                &opts.namespace,
                now,
                s.central.renew_before,
            )
            .await
            .classify_by(installer_class)?;
            let mut steps: Vec<TlsStep> = actions
                .into_iter()
                .map(|(secret, action)| TlsStep { secret, action })
                .collect();
            match opts.wiring.topology {
                // The receiver's server certificate: the name push.yaml's clients check
                // (cmm-receiver) and the central nodes' addresses the clusters dial.
                Topology::Push => {
                    let mut sans = vec![cmm_pki::San::Dns(topology::RECEIVER_SERVER_NAME.into())];
                    sans.extend(advertised_sans(conn, &s.prometheus).await?);
                    let action = cmm_installer::tls::ensure_cluster(
                        conn,
                        &opts.namespace,
                        cmm_core::naming::RECEIVER_TLS_SECRET,
                        topology::RECEIVER_SERVER_NAME,
                        &pki,
                        &sans,
                        now,
                        s.central.renew_before,
                    )
                    .await
                    .classify_by(installer_class)?;
                    steps.push(TlsStep {
                        secret: format!(
                            "Secret {} (the receiver)",
                            cmm_core::naming::RECEIVER_TLS_SECRET
                        ),
                        action,
                    });
                }
                // Where the clusters' registrations put their sidecars' addresses; Query
                // mounts it (optional) and re-reads it.
                Topology::Thanos => {
                    let created = conn
                        .ensure_configmap(&opts.namespace, topology::THANOS_ENDPOINTS_CONFIGMAP)
                        .await
                        .classify_by(installer_class)?;
                    tracing::info!(
                        created,
                        "ConfigMap {} for the clusters' store endpoints",
                        topology::THANOS_ENDPOINTS_CONFIGMAP
                    );
                }
                Topology::Pull => {}
            }
            Ok(steps)
        }
        (Role::Cluster, Some(central)) => {
            let sans = advertised_sans(conn, &s.prometheus).await?;
            let action = cmm_installer::tls::ensure_cluster(
                conn,
                &opts.namespace,
                cmm_core::naming::PROMETHEUS_TLS_SECRET,
                opts.cluster.release(),
                central,
                &sans,
                now,
                s.central.renew_before,
            )
            .await
            .classify_by(installer_class)?;
            Ok(vec![TlsStep {
                secret: format!("Secret {}", cmm_core::naming::PROMETHEUS_TLS_SECRET),
                action,
            }])
        }
        (Role::Cluster, None) => Ok(Vec::new()),
    }
}
