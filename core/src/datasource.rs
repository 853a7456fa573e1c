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
}
