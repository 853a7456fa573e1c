//! The Grafana datasource CMM makes for a cluster. One definition serves both routes: the
//! seed's `envsubst` route (an entry in `additionalDataSources`) and registration through
//! Grafana's HTTP API.

use serde_json::{json, Value};

use crate::naming::{ClusterName, SCRAPE_INTERVAL};

/// The datasource as Grafana's provisioning file and `POST /api/datasources` both take it.
pub fn prometheus_datasource(cluster: &ClusterName, url: &str) -> Value {
    json!({
        "name": cluster.datasource_name(),
        "uid": cluster.datasource_uid(),
        "type": "prometheus",
        "access": "proxy",
        "url": url,
        "isDefault": false,
        "jsonData": {
            // POST keeps long PromQL out of URLs and proxy logs.
            "httpMethod": "POST",
            // Grafana's $__rate_interval needs to know the scrape interval.
            "timeInterval": SCRAPE_INTERVAL,
        },
    })
}

/// For the envsubst route to a cluster served over mutual TLS (an `https://` URL): Grafana
/// presents its client certificate and trusts the CMM CAs, all three read by Grafana's
/// provisioning from its environment (`$NAME` is expanded in provisioning files), where
/// central_monitor.yaml puts them from the Secrets. No certificate or key is in any values file.
pub fn with_tls_from_env(mut ds: Value) -> Value {
    use crate::naming::{GRAFANA_TLS_ENV_CA, GRAFANA_TLS_ENV_CERT, GRAFANA_TLS_ENV_KEY};
    ds["jsonData"]["tlsAuth"] = json!(true);
    ds["jsonData"]["tlsAuthWithCACert"] = json!(true);
    ds["secureJsonData"] = json!({
        "tlsClientCert": format!("${GRAFANA_TLS_ENV_CERT}"),
        "tlsClientKey": format!("${GRAFANA_TLS_ENV_KEY}"),
        "tlsCACert": format!("${GRAFANA_TLS_ENV_CA}"),
    });
    ds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_datasource_is_named_and_keyed_by_cluster() {
        let c = ClusterName::parse("kr-mum").unwrap();
        let ds = prometheus_datasource(&c, "http://10.0.0.11:30090");
        assert_eq!(ds["uid"], "cmm-kr-mum");
        assert_eq!(ds["name"], "kr-mum");
        assert_eq!(ds["jsonData"]["timeInterval"], SCRAPE_INTERVAL);
    }

    #[test]
    fn the_tls_route_refers_to_the_environment_and_carries_no_certificate() {
        let c = ClusterName::parse("kr-mum").unwrap();
        let ds = with_tls_from_env(prometheus_datasource(&c, "https://10.0.0.11:30090"));
        assert_eq!(ds["jsonData"]["tlsAuth"], true);
        assert_eq!(ds["secureJsonData"]["tlsClientKey"], "$CMM_TLS_CLIENT_KEY");
        assert!(!ds.to_string().contains("BEGIN"));
    }
}
