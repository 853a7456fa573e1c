//! CMM's own certificate authority, for mutual TLS between the central Grafana and every
//! cluster's Prometheus (docs/security.md).
//!
//! Three kinds of certificate, all ECDSA P-256 and all made here (no openssl shell-outs):
//! - the CMM CA, kept by the central role;
//! - one server certificate per cluster, whose SANs are the addresses the cluster advertises;
//! - client certificates: one for the central Grafana, one per cluster for Prometheus scraping
//!   itself through the same authenticating proxy.
//!
//! Pure: time comes in as an argument, keys and certificates go out as PEM text. Where they are
//! stored (Kubernetes Secrets) is the caller's business.

mod ca;
pub mod clock;
mod inspect;
mod password;
mod verify;

pub use ca::{Ca, Issued, Leaf, San, BACKDATE_SECS, CA_VALIDITY_DAYS, LEAF_VALIDITY_DAYS};
pub use inspect::{expiry, fingerprint, inspect, inspect_bundle, inspect_der, CertInfo, Expiry};
pub use password::password;
pub use verify::{verify, Usage};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: not a PEM certificate ({problem})")]
    Parse { what: String, problem: String },
    #[error("{what}: not a PEM private key ({problem})")]
    Key { what: String, problem: String },
    #[error(
        "the CA certificate and the CA key do not belong together: the key was replaced or \
             the Secret was edited by hand — restore both from the same backup, or make a new CA"
    )]
    KeyMismatch,
    #[error("making a certificate: {0}")]
    Generate(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{subject}: not trusted: {problem}")]
    Untrusted { subject: String, problem: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
