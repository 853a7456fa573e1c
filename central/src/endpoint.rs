//! Where the central Grafana can reach a cluster's Prometheus, decided from the cluster's own
//! objects. Pure: the caller fetches the Service, Nodes and Ingresses; this picks the URL.
//!
//! Order: an Ingress routing to the Service (someone published it on purpose, often with TLS),
//! then a LoadBalancer's address, then the NodePort on a node address (CMM's default values).

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    Flag,
    Ingress,
    LoadBalancer,
    NodePort,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub url: String,
    pub via: Via,
    /// Why this one, in words, for the report.
    pub detail: String,
}

pub struct DiscoveryInput<'a> {
    pub service: &'a Service,
    pub nodes: &'a [Node],
    pub ingresses: &'a [Ingress],
    /// `--advertise-address`: the address the central node reaches this cluster's nodes at
    /// (NAT, a VIP) when no node reports it.
    pub advertise_address: Option<&'a str>,
}

/// Whether Grafana would read this endpoint in the clear (`http://`, in any case).
pub fn is_plain_http(url: &str) -> bool {
    url.trim_start()
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
}

/// Pick the endpoint; the error lists what was looked at and how to fix it.
pub fn discover(input: &DiscoveryInput<'_>) -> Result<Endpoint> {
    let svc_name = input.service.metadata.name.as_deref().unwrap_or("");
    let spec = input.service.spec.clone().unwrap_or_default();
    let ports = spec.ports.clone().unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http-web"))
        .or_else(|| ports.first());

    if let Some(ep) = ingress_endpoint(svc_name, input.ingresses) {
        return Ok(ep);
    }
    // A port leading to the mutual-TLS proxy (CMM's default values) is HTTPS; anything else is
    // the plain HTTP Prometheus serves itself.
    let scheme = match port.and_then(|p| p.target_port.as_ref()) {
        Some(IntOrString::String(name)) if name == cmm_core::naming::MTLS_PORT_NAME => "https",
        _ => "http",
    };
    let svc_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if svc_type == "LoadBalancer" {
        let lb = input
            .service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .and_then(|i| i.first());
        if let (Some(lb), Some(p)) = (lb, port) {
            if let Some(host) = lb.ip.as_deref().or(lb.hostname.as_deref()) {
                return Ok(Endpoint {
                    url: format!("{scheme}://{}:{}", bracket(host), p.port),
                    via: Via::LoadBalancer,
                    detail: format!("Service {svc_name} is a LoadBalancer at {host}"),
                });
            }
        }
    }
    if matches!(svc_type, "NodePort" | "LoadBalancer") {
        if let Some(node_port) = port.and_then(|p| p.node_port) {
            let (addr, why) = match input.advertise_address {
                Some(a) => (a.to_owned(), "the advertise-address setting".to_owned()),
                None => node_address(input.nodes).ok_or_else(|| Error::Discovery {
                    problem: format!(
                        "Service {svc_name} is a NodePort ({node_port}) but no Ready node reports \
                         an ExternalIP or InternalIP: set advertise-address or prometheus-url"
                    ),
                })?,
            };
            return Ok(Endpoint {
                url: format!("{scheme}://{}:{node_port}", bracket(&addr)),
                via: Via::NodePort,
                detail: format!("NodePort {node_port} of Service {svc_name} on {addr} ({why})"),
            });
        }
    }
    Err(Error::Discovery {
        problem: format!(
            "Service {svc_name} is {svc_type} and no Ingress routes to it, so nothing outside the \
             cluster reaches it: install with CMM's values (NodePort {}), or pass --prometheus-url",
            cmm_core::naming::PROMETHEUS_NODE_PORT
        ),
    })
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn ingress_endpoint(svc_name: &str, ingresses: &[Ingress]) -> Option<Endpoint> {
    let mut found: Vec<Endpoint> = Vec::new();
    for ing in ingresses {
        let Some(spec) = &ing.spec else { continue };
        let tls_hosts: Vec<&str> = spec
            .tls
            .iter()
            .flatten()
            .flat_map(|t| t.hosts.iter().flatten().map(String::as_str))
            .collect();
        for rule in spec.rules.iter().flatten() {
            let Some(host) = rule.host.as_deref() else {
                continue;
            };
            if host.starts_with("*.") {
                continue;
            }
            for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
                let to_us = path
                    .backend
                    .service
                    .as_ref()
                    .is_some_and(|s| s.name == svc_name);
                if !to_us {
                    continue;
                }
                let scheme = if tls_hosts.contains(&host) {
                    "https"
                } else {
                    "http"
                };
                let p = path.path.as_deref().unwrap_or("/").trim_end_matches('/');
                found.push(Endpoint {
                    url: format!("{scheme}://{host}{p}"),
                    via: Via::Ingress,
                    detail: format!(
                        "Ingress {} routes {host}{} to Service {svc_name}",
                        ing.metadata.name.as_deref().unwrap_or(""),
                        if p.is_empty() { "/" } else { p }
                    ),
                });
            }
        }
    }
    // Prefer TLS, then the shortest URL, so the choice does not depend on list order.
    found.sort_by_key(|e| (!e.url.starts_with("https"), e.url.len(), e.url.clone()));
    found.into_iter().next()
}

/// A Ready node's ExternalIP, else its InternalIP; nodes in name order for a stable choice.
/// Every ExternalIP and InternalIP of every node: the NodePort answers on each, so the
/// cluster's server certificate names them all (Ready or not: a node that comes back must not
/// need a new certificate first).
pub fn node_addresses(nodes: &[Node]) -> Vec<String> {
    let mut out: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
        .flatten()
        .filter(|a| a.type_ == "ExternalIP" || a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn node_address(nodes: &[Node]) -> Option<(String, String)> {
    let mut ready: Vec<&Node> = nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect();
    ready.sort_by_key(|n| n.metadata.name.clone());
    for kind in ["ExternalIP", "InternalIP"] {
        for n in &ready {
            let addrs = n.status.as_ref().and_then(|s| s.addresses.as_ref());
            if let Some(a) = addrs.into_iter().flatten().find(|a| a.type_ == kind) {
                return Some((
                    a.address.clone(),
                    format!(
                        "{kind} of node {}",
                        n.metadata.name.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }
    fn nodes(v: serde_json::Value) -> Vec<Node> {
        serde_json::from_value(v).unwrap()
    }
    fn node(name: &str, ready: bool, addrs: &[(&str, &str)]) -> serde_json::Value {
        let a: Vec<_> = addrs
            .iter()
            .map(|(t, a)| json!({"type": t, "address": a}))
            .collect();
        json!({"metadata": {"name": name}, "status": {
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
            "addresses": a}})
    }
    fn nodeport() -> Service {
        svc(
            json!({"metadata": {"name": "cmm-prometheus"}, "spec": {"type": "NodePort",
            "ports": [{"name": "http-web", "port": 9090, "nodePort": 30090}]}}),
        )
    }

    #[test]
    fn table() {
        let np = nodeport();
        let mtls = svc(
            json!({"metadata": {"name": "cmm-prometheus-0"}, "spec": {"type": "NodePort",
            "ports": [{"name": "http-web", "port": 9090, "nodePort": 30090, "targetPort": "cmm-mtls"}]}}),
        );
        let lb = svc(json!({"metadata": {"name": "cmm-prometheus"},
            "spec": {"type": "LoadBalancer", "ports": [{"name": "http-web", "port": 9090, "nodePort": 31000}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}));
        let lb_pending = svc(json!({"metadata": {"name": "cmm-prometheus"},
            "spec": {"type": "LoadBalancer", "ports": [{"name": "http-web", "port": 9090, "nodePort": 31000}]}}));
        let cip = svc(json!({"metadata": {"name": "cmm-prometheus"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 9090}]}}));
        let two = nodes(json!([
            node("b", true, &[("InternalIP", "10.0.0.12")]),
            node("a", true, &[("InternalIP", "10.0.0.11")]),
            node("c", false, &[("ExternalIP", "198.51.100.9")]),
        ]));
        let ext = nodes(json!([
            node("a", true, &[("InternalIP", "10.0.0.11")]),
            node(
                "b",
                true,
                &[("InternalIP", "10.0.0.12"), ("ExternalIP", "198.51.100.2")]
            ),
        ]));
        let v6 = nodes(json!([node("a", true, &[("InternalIP", "fd00::11")])]));
        let ing: Vec<Ingress> = serde_json::from_value(json!([
            {"metadata": {"name": "other"}, "spec": {"rules": [{"host": "x.example", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "grafana", "port": {"number": 80}}}}]}}]}},
            {"metadata": {"name": "prom"}, "spec": {"tls": [{"hosts": ["prom.kr-mum.example"]}],
                "rules": [{"host": "prom.kr-mum.example", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "cmm-prometheus", "port": {"number": 9090}}}}]}}]}}
        ])).unwrap();
        let none: Vec<Ingress> = vec![];

        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            &Service,
            &[Node],
            &[Ingress],
            Option<&str>,
            Result<(&str, Via), &str>,
        )> = vec![
            (
                "nodeport, internal IP of first ready node by name",
                &np,
                &two,
                &none,
                None,
                Ok(("http://10.0.0.11:30090", Via::NodePort)),
            ),
            (
                "the mutual-TLS proxy's NodePort (CMM's values) is https",
                &mtls,
                &two,
                &none,
                None,
                Ok(("https://10.0.0.11:30090", Via::NodePort)),
            ),
            (
                "nodeport, external IP preferred over internal",
                &np,
                &ext,
                &none,
                None,
                Ok(("http://198.51.100.2:30090", Via::NodePort)),
            ),
            (
                "advertise address overrides nodes",
                &np,
                &ext,
                &none,
                Some("192.0.2.1"),
                Ok(("http://192.0.2.1:30090", Via::NodePort)),
            ),
            (
                "IPv6 node address is bracketed",
                &np,
                &v6,
                &none,
                None,
                Ok(("http://[fd00::11]:30090", Via::NodePort)),
            ),
            (
                "load balancer ingress",
                &lb,
                &two,
                &none,
                None,
                Ok(("http://203.0.113.7:9090", Via::LoadBalancer)),
            ),
            (
                "pending load balancer falls back to its node port",
                &lb_pending,
                &two,
                &none,
                None,
                Ok(("http://10.0.0.11:31000", Via::NodePort)),
            ),
            (
                "ingress to the service wins, https from tls hosts",
                &np,
                &two,
                &ing,
                None,
                Ok(("https://prom.kr-mum.example", Via::Ingress)),
            ),
            (
                "clusterIP only",
                &cip,
                &two,
                &none,
                None,
                Err("prometheus-url"),
            ),
            (
                "nodeport but no ready node address",
                &np,
                &[],
                &none,
                None,
                Err("advertise-address"),
            ),
        ];
        for (name, s, n, i, adv, want) in cases {
            let got = discover(&DiscoveryInput {
                service: s,
                nodes: n,
                ingresses: i,
                advertise_address: adv,
            });
            match (got, want) {
                (Ok(ep), Ok((url, via))) => {
                    assert_eq!((ep.url.as_str(), ep.via), (url, via), "{name}")
                }
                (Err(e), Err(hint)) => assert!(e.to_string().contains(hint), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }
}
