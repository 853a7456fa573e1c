//! Reading a certificate back: who it names, what it may be used for, when it ends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use crate::{Error, Result, San};

#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    /// The subject's common name (CMM names every certificate by it).
    pub subject: String,
    pub issuer: String,
    #[serde(skip)]
    pub not_before: SystemTime,
    #[serde(skip)]
    pub not_after: SystemTime,
    pub sans: Vec<San>,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    pub digital_signature: bool,
    #[serde(skip)]
    pub public_key_der: Vec<u8>,
}

fn common_name(name: &X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn system_time(t: ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH
    }
}

/// The first certificate of `pem` (`what` names it in errors, e.g. "Secret monitor/cmm-ca").
pub fn inspect(pem: &str, what: &str) -> Result<CertInfo> {
    inspect_bundle(pem, what)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Parse {
            what: what.into(),
            problem: "no CERTIFICATE block".into(),
        })
}

/// One DER certificate, as a TLS handshake hands over the peer's (`what` names it in errors).
pub fn inspect_der(der: &[u8], what: &str) -> Result<CertInfo> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::Parse {
        what: what.into(),
        problem: format!("not X.509: {e}"),
    })?;
    Ok(info(&cert))
}

/// Every certificate of a PEM bundle (a trust bundle holds the new and the old CA during a
/// rotation).
pub fn inspect_bundle(pem: &str, what: &str) -> Result<Vec<CertInfo>> {
    let parse = |problem: String| Error::Parse {
        what: what.into(),
        problem,
    };
    let blocks = ::pem::parse_many(pem).map_err(|e| parse(e.to_string()))?;
    let mut out = Vec::new();
    for block in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
        let (_, cert) = X509Certificate::from_der(block.contents())
            .map_err(|e| parse(format!("not X.509: {e}")))?;
        out.push(info(&cert));
    }
    Ok(out)
}

fn info(cert: &X509Certificate<'_>) -> CertInfo {
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(San::Dns((*d).to_owned())),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap())),
                        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
                        _ => None,
                    };
                    sans.extend(ip.map(San::Ip));
                }
                _ => {}
            }
        }
    }
    let eku = cert.extended_key_usage().ok().flatten().map(|e| e.value);
    CertInfo {
        subject: common_name(cert.subject()),
        issuer: common_name(cert.issuer()),
        not_before: system_time(cert.validity().not_before),
        not_after: system_time(cert.validity().not_after),
        sans,
        is_ca: cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.value.ca),
        server_auth: eku.is_some_and(|e| e.server_auth),
        client_auth: eku.is_some_and(|e| e.client_auth),
        digital_signature: cert
            .key_usage()
            .ok()
            .flatten()
            .is_some_and(|k| k.value.digital_signature()),
        public_key_der: cert.public_key().raw.to_vec(),
    }
}

/// How long a certificate has left, and whether it is time to renew it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Expiry {
    /// Whole days until notAfter (negative once expired).
    pub days_left: i64,
    pub expired: bool,
    /// Within the renewal window (or expired, or not valid yet).
    pub renew: bool,
}

/// The renewal decision: renew when fewer than `renew_before` remain.
pub fn expiry(info: &CertInfo, now: SystemTime, renew_before: Duration) -> Expiry {
    let left: i64 = match info.not_after.duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let expired = left <= 0;
    let not_yet = info.not_before > now;
    Expiry {
        days_left: left.div_euclid(crate::clock::day_secs() as i64),
        expired,
        renew: expired || not_yet || left < renew_before.as_secs() as i64,
    }
}

/// The SHA-256 fingerprint (lower-case hex) of every certificate of a PEM bundle, joined by
/// `,`: public, and stable for the same certificates, so it can stand for them where the
/// certificates themselves are stored out of sight (Grafana's secureJsonData).
pub fn fingerprint(pem_bundle: &str, what: &str) -> Result<String> {
    let blocks = ::pem::parse_many(pem_bundle).map_err(|e| Error::Parse {
        what: what.to_owned(),
        problem: e.to_string(),
    })?;
    let prints: Vec<String> = blocks
        .iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b.contents())
                .as_ref()
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect()
        })
        .collect();
    if prints.is_empty() {
        return Err(Error::Parse {
            what: what.to_owned(),
            problem: "no CERTIFICATE block".into(),
        });
    }
    Ok(prints.join(","))
}
