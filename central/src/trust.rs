//! How the agent trusts the central Grafana's certificate when `grafana-ca-file` is given.
//!
//! The certificates of the file are added to the system's roots, as before. Many central
//! Grafanas run on a self-signed certificate, often made with `openssl req -x509`, which marks
//! it a CA (basicConstraints CA:TRUE); WebPKI then refuses it as Grafana's own certificate
//! (`CaUsedAsEndEntity`, rustls-webpki `verify_cert.rs`), whatever roots are given. So a
//! server certificate that is byte for byte one of the file's certificates is trusted as
//! exactly itself (pinned): the file is the operator's statement that this certificate is
//! Grafana's, and the handshake still proves Grafana holds its key. Anything else goes
//! through the system verifier unchanged.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::{Error, Result};

/// The system verifier with the file's certificates as extra roots, and those certificates
/// pinned as server certificates.
#[derive(Debug)]
struct PinnedOrSystem {
    system: rustls_platform_verifier::Verifier,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinnedOrSystem {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.system.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(e)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                tracing::debug!(refused_as_chain = %e, "Grafana presents the certificate given as grafana-ca-file: trusted as itself");
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.system.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.system.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.system.supported_verify_schemes()
    }
}

/// The TLS configuration of a Grafana client given `ca_pem` (the `grafana-ca-file`): what
/// reqwest would build with those roots (platform verifier, HTTP/1.1), plus the pin above.
pub fn grafana_tls(ca_pem: &str) -> Result<rustls::ClientConfig> {
    // One verifier per file for the whole run: the platform verifier reads the system's roots
    // (~150 files on Debian) once per instance, and `bootstrap --role central` builds its
    // Grafana client twice (its settings check the URL and CA file before anything runs, the
    // install builds the one it uses). A clone shares the verifier.
    static BUILT: std::sync::Mutex<Option<(String, rustls::ClientConfig)>> =
        std::sync::Mutex::new(None);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((pem, config)) = built.as_ref() {
        if pem == ca_pem {
            return Ok(config.clone());
        }
    }
    let config = build_grafana_tls(ca_pem)?;
    *built = Some((ca_pem.to_owned(), config.clone()));
    Ok(config)
}

fn build_grafana_tls(ca_pem: &str) -> Result<rustls::ClientConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            Error::invalid(
                "grafana-ca-file",
                format!("is not a PEM certificate bundle: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(Error::invalid(
            "grafana-ca-file",
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA's certificate \
             file, or Grafana's own certificate if it is self-signed",
        ));
    }
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let system =
        rustls_platform_verifier::Verifier::new_with_extra_roots(certs.clone(), provider.clone())
            .map_err(|e| {
            Error::invalid(
                "grafana-ca-file",
                format!(
                    "cannot build the certificate verifier ({e}): if this host has no trusted CA \
                 certificates, install the ca-certificates package or point SSL_CERT_FILE at a \
                 bundle"
                ),
            )
        })?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("grafana-ca-file", format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedOrSystem {
            system,
            pinned: certs,
        }))
        .with_no_client_auth();
    // reqwest without its http2 feature offers HTTP/1.1 only; say the same.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Whether a transport error is Grafana's certificate being refused (rustls says "invalid
/// peer certificate: …"): a setting to fix, not a Grafana to wait for.
pub fn is_certificate_refusal(cause: &str) -> bool {
    cause.contains("invalid peer certificate")
}
