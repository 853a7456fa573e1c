//! Check's Grafana stage in push and thanos: the shared datasource, the cluster's place in the
//! shared rule set, and where the data meets (push: the receiver holds the cluster's samples;
//! thanos: the sidecar's address is in the endpoints ConfigMap). [`gather`] reads, [`judge`]
//! decides without I/O, like the other stages.

use cmm_central::endpoint::Endpoint;
use cmm_core::finding::{Finding, RepairKind, Stage};
use cmm_core::ClusterName;
use cmm_installer::topology::{self, Topology, Wiring};

use crate::ops::registration::Registration;
use crate::ops::{central, endpoint as ep};
use crate::settings::CentralSide;

/// The shared datasource as Grafana answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Datasource {
    /// Present; Grafana's own health check through it.
    Checked {
        ok: bool,
        message: String,
    },
    /// Present, but its health check could not be asked.
    CheckError(String),
    Missing,
    /// The datasource could not be read at all.
    Error(String),
}

/// Push: the receiver, as Grafana reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Receiver {
    /// No central material: the receiver admits only Grafana's certificate for reads.
    NotReadable { base: String },
    /// `up` series of the cluster within the lookback, or why they could not be counted.
    Read {
        base: String,
        series: Result<usize, String>,
    },
}

/// Thanos: this cluster's key of the endpoints ConfigMap.
#[derive(Debug, Clone, PartialEq)]
pub enum Store {
    /// No central context: the ConfigMap is on the central cluster.
    NotReadable,
    Read {
        key: String,
        /// What the key should hold (from the cluster's endpoint).
        want: Option<String>,
        got: Result<Option<String>, String>,
        endpoint_url: String,
    },
}

/// Everything the shared stage judges.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub topology: Topology,
    pub datasource_uid: &'static str,
    pub datasource: Datasource,
    /// The clusters the shared rule set expects, or why the group could not be read.
    pub members: Result<Vec<ClusterName>, String>,
    pub receiver: Option<Receiver>,
    pub store: Option<Store>,
}

/// Read what the stage judges. `None` in pull (nothing shared).
pub async fn gather(
    reg: &Registration,
    cluster: &ClusterName,
    wiring: &Wiring,
    side: &CentralSide,
    pki: Option<&cmm_installer::tls::CentralPki>,
    endpoint: &Endpoint,
) -> Option<Facts> {
    let uid = wiring.topology.shared_datasource_uid()?;
    let datasource = match reg.client.datasource_by_uid(uid).await {
        Ok(Some(_)) => match reg.client.datasource_health(uid).await {
            Ok(h) => Datasource::Checked {
                ok: h.ok,
                message: h.message,
            },
            Err(e) => Datasource::CheckError(e.to_string()),
        },
        Ok(None) => Datasource::Missing,
        Err(e) => Datasource::Error(e.to_string()),
    };
    let members = reg
        .client
        .rule_group(
            cmm_central::rules::FLEET_FOLDER_UID,
            cmm_central::rules::SHARED_GROUP,
        )
        .await
        .map(|g| {
            g.as_ref()
                .map(cmm_central::rules::shared_members)
                .unwrap_or_default()
        })
        .map_err(|e| e.to_string());
    let (receiver, store) = match wiring.topology {
        Topology::Push => (receiver(cluster, wiring, pki).await, None),
        Topology::Thanos => (None, Some(store(cluster, side, endpoint).await)),
        Topology::Pull => (None, None),
    };
    Some(Facts {
        topology: wiring.topology,
        datasource_uid: uid,
        datasource,
        members,
        receiver,
        store,
    })
}

async fn receiver(
    cluster: &ClusterName,
    wiring: &Wiring,
    pki: Option<&cmm_installer::tls::CentralPki>,
) -> Option<Receiver> {
    let base = wiring.receiver_url.as_deref().and_then(ep::receiver_base)?;
    let Some((base, probe)) = pki.and_then(|pki| ep::receiver_probe(wiring, pki, 2)) else {
        return Some(Receiver::NotReadable { base });
    };
    let series = match probe {
        Ok(p) => p.cluster_series(cluster).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    Some(Receiver::Read { base, series })
}

async fn store(cluster: &ClusterName, side: &CentralSide, endpoint: &Endpoint) -> Store {
    if side.context.is_none() {
        return Store::NotReadable;
    }
    let key = topology::endpoint_key(cluster);
    let got = match central::central_connection(side).await {
        Ok(conn) => conn
            .configmap_key(&side.namespace, topology::THANOS_ENDPOINTS_CONFIGMAP, &key)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("{e:#}")),
    };
    Store::Read {
        key,
        want: ep::endpoint_host(endpoint).map(|h| topology::endpoint_file(&h)),
        got,
        endpoint_url: endpoint.url.clone(),
    }
}

/// The findings of the shared stage: pure over the facts.
pub fn judge(cluster: &ClusterName, f: &Facts) -> Vec<Finding> {
    let topo = f.topology;
    let register = |finding: Finding| {
        finding.repair(
            RepairKind::Register,
            format!("`cmm-agent register --topology {topo}` (or check --repair)"),
        )
    };
    let mut out = vec![judge_datasource(f)];
    let subject = format!(
        "rule group {}/{}",
        cmm_central::rules::FLEET_FOLDER_UID,
        cmm_central::rules::SHARED_GROUP
    );
    out.push(match &f.members {
        Ok(members) if members.contains(cluster) => {
            Finding::ok(Stage::Grafana, "grafana.shared-rules", &subject).with(format!(
                "CmmClusterSilent expects {} cluster(s), {cluster} among them",
                members.len()
            ))
        }
        Ok(_) => register(
            Finding::failed(Stage::Grafana, "grafana.shared-rules", &subject).with(format!(
                "{cluster} is not registered: nothing alerts when it goes silent"
            )),
        ),
        Err(e) => Finding::failed(Stage::Grafana, "grafana.shared-rules", &subject).with(e),
    });
    out.extend(f.receiver.as_ref().map(|r| judge_receiver(cluster, r)));
    out.extend(f.store.as_ref().map(|s| judge_store(s, register)));
    out
}

fn judge_datasource(f: &Facts) -> Finding {
    let (uid, topo) = (f.datasource_uid, f.topology);
    let subject = format!("datasource {uid}");
    let id = "grafana.shared-datasource";
    match &f.datasource {
        Datasource::Checked { ok: true, message } => Finding::ok(Stage::Grafana, id, subject)
            .with(format!("shared by every cluster ({topo}); Grafana's check: {message}")),
        Datasource::Checked { ok: false, message } => Finding::failed(Stage::Grafana, id, subject)
            .with(format!("Grafana's check through it failed: {message}"))
            .repair(
                RepairKind::Manual,
                "the central store does not answer Grafana: run `cmm-agent check` on the central node",
            ),
        Datasource::CheckError(e) => Finding::failed(Stage::Grafana, id, subject).with(e),
        Datasource::Missing => Finding::failed(Stage::Grafana, id, subject)
            .with(format!(
                "the central Grafana has no datasource {uid}, which topology {topo} provisions"
            ))
            .repair(
                RepairKind::Manual,
                format!(
                    "`cmm-agent bootstrap --role central --topology {topo}` on the central admin host"
                ),
            ),
        Datasource::Error(e) => {
            Finding::failed(Stage::Grafana, id, "the central Grafana").with(e)
        }
    }
}

fn judge_receiver(cluster: &ClusterName, r: &Receiver) -> Finding {
    let id = "push.receiver";
    match r {
        Receiver::NotReadable { base } => Finding::skipped(Stage::Grafana, id, base).with(
            "the receiver admits only Grafana's certificate for reads: set central-context to check it",
        ),
        Receiver::Read { base, series: Ok(n) } if *n > 0 => Finding::ok(Stage::Grafana, id, base)
            .with(format!("{n} `up` series of {cluster} arrived within the lookback")),
        Receiver::Read { base, series: Ok(_) } => Finding::failed(Stage::Grafana, id, base)
            .with(format!(
                "the receiver holds no recent sample of {cluster}: its Prometheus does not reach receiver-url"
            ))
            .repair(
                RepairKind::Manual,
                "read the remote-write errors in the cluster's Prometheus log (docs/runbook.md#cmmclustersilent)",
            ),
        Receiver::Read { base, series: Err(e) } => {
            Finding::failed(Stage::Grafana, id, base).with(e)
        }
    }
}

fn judge_store(s: &Store, register: impl Fn(Finding) -> Finding) -> Finding {
    let id = "thanos.endpoint";
    let subject = format!("ConfigMap {}", topology::THANOS_ENDPOINTS_CONFIGMAP);
    match s {
        Store::NotReadable => Finding::skipped(Stage::Grafana, id, subject)
            .with("the endpoints are on the central cluster: set central-context to check it"),
        Store::Read {
            key,
            want,
            got,
            endpoint_url,
        } => match (got, want) {
            (Ok(Some(g)), Some(w)) if g == w => Finding::ok(Stage::Grafana, id, subject)
                .with(format!("key {key}: {}", w.lines().last().unwrap_or(""))),
            (Ok(Some(_)), _) => register(Finding::failed(Stage::Grafana, id, subject).with(
                format!("key {key} names another address than this cluster's {endpoint_url}"),
            )),
            (Ok(None), _) => register(Finding::failed(Stage::Grafana, id, subject).with(format!(
                "no key {key}: Thanos Query does not read this cluster"
            ))),
            (Err(e), _) => Finding::failed(Stage::Grafana, id, subject).with(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmm_core::finding::Severity;

    fn name(s: &str) -> ClusterName {
        ClusterName::parse(s).unwrap()
    }

    fn facts(topology: Topology) -> Facts {
        Facts {
            topology,
            datasource_uid: topology.shared_datasource_uid().unwrap(),
            datasource: Datasource::Checked {
                ok: true,
                message: "Successfully queried the Prometheus API.".into(),
            },
            members: Ok(vec![name("kr-mum"), name("wai-eks")]),
            receiver: None,
            store: None,
        }
    }

    fn severity_of(out: &[Finding], id: &str) -> Option<(Severity, bool)> {
        out.iter().find(|f| f.id == id).map(|f| {
            (
                f.severity,
                f.repair
                    .as_ref()
                    .is_some_and(|r| r.kind == RepairKind::Register),
            )
        })
    }

    #[test]
    fn the_shared_datasource_and_the_rule_set_decide_the_grafana_stage() {
        let me = name("kr-mum");
        let ok = judge(&me, &facts(Topology::Push));
        assert_eq!(
            severity_of(&ok, "grafana.shared-datasource"),
            Some((Severity::Ok, false))
        );
        assert_eq!(
            severity_of(&ok, "grafana.shared-rules"),
            Some((Severity::Ok, false))
        );
        for (ds, says) in [
            (
                Datasource::Missing,
                "bootstrap --role central --topology push",
            ),
            (
                Datasource::Checked {
                    ok: false,
                    message: "connection refused".into(),
                },
                "connection refused",
            ),
            (Datasource::Error("503".into()), "503"),
            (Datasource::CheckError("timeout".into()), "timeout"),
        ] {
            let mut f = facts(Topology::Push);
            f.datasource = ds;
            let out = judge(&me, &f);
            let d = out
                .iter()
                .find(|x| x.id == "grafana.shared-datasource")
                .unwrap();
            assert_eq!(d.severity, Severity::Failed);
            let text = format!("{:?} {:?}", d.evidence, d.repair);
            assert!(text.contains(says), "{text}");
        }
        // A cluster missing from the rule set is failed, with the register repair.
        let out = judge(&name("other"), &facts(Topology::Push));
        assert_eq!(
            severity_of(&out, "grafana.shared-rules"),
            Some((Severity::Failed, true))
        );
    }

    #[test]
    fn push_judges_the_receivers_samples() {
        let me = name("kr-mum");
        let base = "https://10.0.0.5:30090/".to_owned();
        for (receiver, want) in [
            (
                Receiver::NotReadable { base: base.clone() },
                Severity::Skipped,
            ),
            (
                Receiver::Read {
                    base: base.clone(),
                    series: Ok(3),
                },
                Severity::Ok,
            ),
            (
                Receiver::Read {
                    base: base.clone(),
                    series: Ok(0),
                },
                Severity::Failed,
            ),
            (
                Receiver::Read {
                    base: base.clone(),
                    series: Err("403".into()),
                },
                Severity::Failed,
            ),
        ] {
            let mut f = facts(Topology::Push);
            f.receiver = Some(receiver.clone());
            let out = judge(&me, &f);
            assert_eq!(
                severity_of(&out, "push.receiver").map(|s| s.0),
                Some(want),
                "{receiver:?}"
            );
        }
    }

    #[test]
    fn thanos_judges_the_clusters_key() {
        let me = name("kr-mum");
        let want = topology::endpoint_file("10.0.0.7");
        let read = |got: Result<Option<String>, String>| Store::Read {
            key: topology::endpoint_key(&me),
            want: Some(want.clone()),
            got,
            endpoint_url: "https://10.0.0.7:30090".into(),
        };
        for (store, severity, repair) in [
            (Store::NotReadable, Severity::Skipped, false),
            (read(Ok(Some(want.clone()))), Severity::Ok, false),
            (
                read(Ok(Some(topology::endpoint_file("10.9.9.9")))),
                Severity::Failed,
                true,
            ),
            (read(Ok(None)), Severity::Failed, true),
            (read(Err("forbidden".into())), Severity::Failed, false),
        ] {
            let mut f = facts(Topology::Thanos);
            f.store = Some(store.clone());
            let out = judge(&me, &f);
            assert_eq!(
                severity_of(&out, "thanos.endpoint"),
                Some((severity, repair)),
                "{store:?}"
            );
        }
    }
}
