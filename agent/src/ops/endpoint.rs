//! Where the cluster's Prometheus is, as the central side reaches it: the endpoint given or
//! discovered from the cluster's Services, the names its server certificate must carry, and
//! the push receiver read as Grafana reads it.

use anyhow::Context;
use cmm_central::endpoint::{self, DiscoveryInput, Endpoint, Via};
use cmm_central::prometheus::{ClientIdentity, PrometheusTarget};
use cmm_central::retry::RetryPolicy;
use cmm_core::naming::{PROMETHEUS_NODEPORT_SERVICE, PROMETHEUS_SERVICE};
use cmm_installer::kube::Connected;
use cmm_installer::topology::Wiring;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;

use crate::exit::{central_class, installer_class, Classify, ExitCode};
use crate::settings::{BadInput, PrometheusSettings};

/// The endpoint given by setting, else discovered from the cluster.
pub async fn find(
    kube: &Connected,
    namespace: &str,
    args: &PrometheusSettings,
) -> anyhow::Result<Endpoint> {
    match &args.url {
        Some(url) => Ok(flag_endpoint(url)),
        None => discover(kube, namespace, args).await,
    }
}

/// An `http://` endpoint becomes a datasource only when plain HTTP was asked for (a given URL
/// was already checked with the settings; this catches a discovered one): refused before
/// Grafana is written to.
pub fn refuse_unasked_plain(found: &Endpoint, insecure_plain_http: bool) -> anyhow::Result<()> {
    if insecure_plain_http || !cmm_central::endpoint::is_plain_http(&found.url) {
        return Ok(());
    }
    Err(BadInput(format!(
        "the endpoint found for this cluster, {} ({}), is plain HTTP: anyone on the path \
         between Grafana and the cluster reads its metrics. If it was installed that way on \
         purpose, say so here too (--insecure-plain-http, CMM_INSECURE_PLAIN_HTTP=true or \
         insecure-plain-http = true in agent.toml); otherwise bootstrap it with mutual TLS \
         (docs/security.md)",
        found.url, found.detail,
    )))
    .classify(ExitCode::Usage)
}

/// The names this cluster's server certificate must carry: every node address (the NodePort
/// answers on each), --advertise-address, the host of --prometheus-url.
pub async fn advertised_sans(
    kube: &Connected,
    args: &PrometheusSettings,
) -> anyhow::Result<Vec<cmm_pki::San>> {
    let nodes = kube.nodes().await.classify_by(installer_class)?;
    let mut addrs = cmm_central::endpoint::node_addresses(&nodes);
    addrs.extend(args.advertise_address.clone());
    if let Some(url) = &args.url {
        let target = PrometheusTarget {
            url: url.clone(),
            ..Default::default()
        };
        if let Some(host) = target
            .parsed_url()
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
        {
            addrs.push(host);
        }
    }
    cmm_installer::tls::server_sans(&addrs)
        .classify(ExitCode::Usage)
        .context("--advertise-address / --prometheus-url")
}

pub fn flag_endpoint(url: &str) -> Endpoint {
    Endpoint {
        url: url.to_owned(),
        via: Via::Flag,
        detail: "--prometheus-url".into(),
    }
}

pub async fn discover(
    kube: &Connected,
    namespace: &str,
    args: &PrometheusSettings,
) -> anyhow::Result<Endpoint> {
    let services: Vec<Service> = kube.list_in(namespace).await.classify_by(installer_class)?;
    // The published Service of CMM's values, else the main one (installs from before it, or
    // values that publish the main Service themselves).
    let named = |n: &str| {
        services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(n))
    };
    let service = named(PROMETHEUS_NODEPORT_SERVICE)
        .or_else(|| named(PROMETHEUS_SERVICE))
        .ok_or_else(|| cmm_central::Error::Discovery {
            problem: format!(
                "no Service {PROMETHEUS_SERVICE} in namespace {namespace} (context {}): install \
                 the cluster with `cmm-agent bootstrap`, pass --namespace, or --prometheus-url",
                kube.context
            ),
        })
        .classify(ExitCode::Usage)?;
    let nodes = kube.nodes().await.classify_by(installer_class)?;
    let ingresses: Vec<Ingress> = kube.list_in(namespace).await.classify_by(installer_class)?;
    endpoint::discover(&DiscoveryInput {
        service,
        nodes: &nodes,
        ingresses: &ingresses,
        advertise_address: args.advertise_address.as_deref(),
    })
    .classify_by(central_class)
}

/// The receiver's query base from its write URL (`…/api/v1/write` → `…/`).
pub fn receiver_base(write_url: &str) -> Option<String> {
    write_url
        .strip_suffix("/api/v1/write")
        .map(|b| format!("{b}/"))
}

/// The push receiver read as Grafana reads it: its query base, and a probe presenting Grafana's
/// client certificate and trusting the CMM CAs. `None` outside push.
pub fn receiver_probe(
    wiring: &Wiring,
    pki: &cmm_installer::tls::CentralPki,
    attempts: u32,
) -> Option<(String, cmm_central::Result<cmm_central::PrometheusProbe>)> {
    let base = wiring.receiver_url.as_deref().and_then(receiver_base)?;
    let probe = cmm_central::PrometheusProbe::new(
        PrometheusTarget {
            url: base.clone(),
            ca_pem: Some(pki.trust_pem.clone()),
            client: Some(ClientIdentity {
                cert_pem: pki.grafana.cert_pem.clone(),
                key: cmm_central::Secret::new(pki.grafana.key_pem.clone()),
            }),
            ..Default::default()
        },
        RetryPolicy {
            attempts,
            ..RetryPolicy::default()
        },
    );
    Some((base, probe))
}

/// The host of an endpoint's URL: the address the central side dials this cluster at.
pub fn endpoint_host(endpoint: &Endpoint) -> Option<String> {
    PrometheusTarget {
        url: endpoint.url.clone(),
        ..Default::default()
    }
    .parsed_url()
    .ok()?
    .host_str()
    .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(url: &str) -> Endpoint {
        Endpoint {
            url: url.into(),
            via: Via::NodePort,
            detail: "NodePort 30090 on node a".into(),
        }
    }

    #[test]
    fn a_discovered_plain_endpoint_is_refused_unless_plain_http_was_asked_for() {
        let err = refuse_unasked_plain(&found("http://10.0.0.5:30090"), false).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("http://10.0.0.5:30090 (NodePort 30090 on node a), is plain HTTP"));
        assert!(msg.contains("insecure-plain-http"), "{msg}");
        assert!(refuse_unasked_plain(&found("HTTP://10.0.0.5:30090"), false).is_err());
        assert!(refuse_unasked_plain(&found("http://10.0.0.5:30090"), true).is_ok());
        assert!(refuse_unasked_plain(&found("https://10.0.0.5:30090"), false).is_ok());
    }
}
