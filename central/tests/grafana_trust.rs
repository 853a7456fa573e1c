//! `grafana-ca-file` against a real TLS handshake (rustls on 127.0.0.1): a self-signed Grafana
//! certificate made the way `openssl req -x509` makes it (basicConstraints CA:TRUE, which
//! WebPKI refuses as a server certificate: `CaUsedAsEndEntity`) is trusted when it is the file
//! given; a certificate nobody gave is a setting to fix (exit 2), not an unreachable Grafana.

use std::sync::Arc;
use std::time::Duration;

use cmm_central::error::ErrorClass;
use cmm_central::retry::RetryPolicy;
use cmm_central::{Credentials, GrafanaClient, Secret};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for 127.0.0.1 marked as a CA, as `openssl req -x509` makes it.
fn self_signed() -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An HTTPS server answering every request as Grafana's /api/health does.
async fn https_grafana(cert_pem: &str, key_pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let body = r#"{"commit":"x","database":"ok","version":"11.3.0"}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://127.0.0.1:{port}/")
}

fn client(url: &str, ca: Option<&str>) -> cmm_central::Result<GrafanaClient> {
    GrafanaClient::with_ca(
        url,
        Credentials::Token(Secret::new("glsa_test")),
        RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        },
        ca,
    )
}

#[tokio::test]
async fn a_self_signed_grafana_certificate_given_as_the_ca_file_is_trusted() {
    let (cert, key) = self_signed();
    let url = https_grafana(&cert, &key).await;
    let version = client(&url, Some(&cert)).unwrap().health().await;
    assert_eq!(version.unwrap(), "11.3.0");
}

#[tokio::test]
async fn a_certificate_nobody_gave_is_a_setting_to_fix_not_an_unreachable_grafana() {
    let (cert, key) = self_signed();
    let url = https_grafana(&cert, &key).await;
    let (other, _) = self_signed();
    for ca in [Some(other.as_str()), None] {
        let Ok(c) = client(&url, ca) else {
            // No CA bundle on this host: the client cannot be built at all (its own test).
            assert!(ca.is_none());
            continue;
        };
        let err = c.health().await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Usage, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("does not trust") && msg.contains("grafana-ca-file"),
            "{msg}"
        );
        assert!(!msg.contains("reachable"), "{msg}");
    }
}

/// The verifier built for a CA file is kept for the run (the system's roots are read once);
/// another file gets its own, never the trust of the one before.
#[tokio::test]
async fn a_kept_verifier_trusts_only_the_file_it_was_built_for() {
    let (a_cert, a_key) = self_signed();
    let (b_cert, b_key) = self_signed();
    let a = https_grafana(&a_cert, &a_key).await;
    let b = https_grafana(&b_cert, &b_key).await;
    for _ in 0..2 {
        assert!(client(&a, Some(&a_cert)).unwrap().health().await.is_ok());
        assert!(client(&b, Some(&b_cert)).unwrap().health().await.is_ok());
        let err = client(&b, Some(&a_cert))
            .unwrap()
            .health()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("does not trust"), "{err}");
        let err = client(&a, Some(&b_cert))
            .unwrap()
            .health()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("does not trust"), "{err}");
    }
}
