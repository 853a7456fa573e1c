//! CMM's central TLS material as Secret objects for a fake API server: what
//! `cmm-agent bootstrap --role central` leaves on the central cluster (installer/src/tls.rs
//! reads `tls.crt`/`tls.key` of Secrets `cmm-ca` and `cmm-grafana-client`).

use std::time::SystemTime;

use base64::Engine;
use cmm_pki::{Ca, Leaf};
use serde_json::{json, Value};

/// A fresh CMM CA and Grafana's client certificate, as the central role stores them.
pub struct CentralMaterial {
    pub ca: Ca,
    pub grafana: Leaf,
}

impl CentralMaterial {
    pub fn new() -> Self {
        Self::at(SystemTime::now())
    }

    pub fn at(now: SystemTime) -> Self {
        let ca = Ca::generate(now).expect("a CA");
        let grafana = ca
            .issue_client(cmm_core::naming::GRAFANA_CLIENT_CN, now)
            .expect("Grafana's client certificate");
        Self { ca, grafana }
    }

    /// Secrets `cmm-ca` and `cmm-grafana-client` in `namespace`.
    pub fn secrets(&self, namespace: &str) -> [Value; 2] {
        [
            secret(
                namespace,
                "cmm-ca",
                &[
                    ("tls.crt", self.ca.cert_pem()),
                    ("tls.key", self.ca.key_pem()),
                ],
            ),
            secret(
                namespace,
                "cmm-grafana-client",
                &[
                    ("tls.crt", &self.grafana.cert_pem),
                    ("tls.key", &self.grafana.key_pem),
                ],
            ),
        ]
    }
}

impl CentralMaterial {
    /// Secret `cmm-prometheus-tls` of cluster `cluster` as the agent issues it: a server
    /// certificate for `sans`, the self-scrape client certificate, the CA to trust.
    pub fn cluster_secret(&self, namespace: &str, cluster: &str, sans: &[cmm_pki::San]) -> Value {
        self.cluster_secret_at(namespace, cluster, sans, SystemTime::now())
    }

    /// [`Self::cluster_secret`] as issued at `now` (in the past: a certificate near its end).
    pub fn cluster_secret_at(
        &self,
        namespace: &str,
        cluster: &str,
        sans: &[cmm_pki::San],
        now: SystemTime,
    ) -> Value {
        let server = self
            .ca
            .issue_server(cluster, sans, now)
            .expect("server certificate");
        let client = self
            .ca
            .issue_client(&format!("cmm-self-{cluster}"), now)
            .expect("self-scrape certificate");
        secret(
            namespace,
            cmm_core::naming::PROMETHEUS_TLS_SECRET,
            &[
                ("tls.crt", &server.cert_pem),
                ("tls.key", &server.key_pem),
                ("ca.crt", self.ca.cert_pem()),
                ("client.crt", &client.cert_pem),
                ("client.key", &client.key_pem),
            ],
        )
    }
}

impl Default for CentralMaterial {
    fn default() -> Self {
        Self::new()
    }
}

/// A Secret object with `data` base64-encoded, as the API server holds it.
pub fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(b64.encode(v))))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": namespace}, "data": data})
}

/// The text of key `key` of a Secret object as the fake returns it.
pub fn secret_text(secret: &Value, key: &str) -> Option<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw = b64.decode(secret["data"][key].as_str()?).ok()?;
    String::from_utf8(raw).ok()
}
