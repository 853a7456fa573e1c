//! Does a certificate chain to what we trust, for what it is used? Checked with rustls'
//! webpki, the verifier a rustls client or server would run, so "verified" here means what it
//! means on the wire.

use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::{anchor_from_trusted_cert, EndEntityCert, KeyUsage};

use crate::{Error, Result, San};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A server certificate, for the name the client dialled.
    Server,
    Client,
}

fn ders(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let blocks = ::pem::parse_many(pem).map_err(|e| Error::Parse {
        what: what.into(),
        problem: e.to_string(),
    })?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect())
}

/// Verify `leaf_pem` against the CAs in `trust_pem` at `now`; for a server, also against the
/// address the client connects to (`name`).
pub fn verify(
    leaf_pem: &str,
    trust_pem: &str,
    usage: Usage,
    name: Option<&San>,
    now: SystemTime,
) -> Result<()> {
    let subject = crate::inspect(leaf_pem, "the certificate")
        .map(|i| i.subject)
        .unwrap_or_default();
    let untrusted = |problem: String| Error::Untrusted {
        subject: subject.clone(),
        problem,
    };
    let leaf = ders(leaf_pem, "the certificate")?
        .into_iter()
        .next()
        .ok_or_else(|| untrusted("no certificate".into()))?;
    let trust = ders(trust_pem, "the trust bundle")?;
    let anchors = trust
        .iter()
        .map(|c| anchor_from_trusted_cert(c).map(|a| a.to_owned()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| untrusted(format!("a trusted CA does not parse: {e:?}")))?;
    let ee = EndEntityCert::try_from(&leaf).map_err(|e| untrusted(format!("{e:?}")))?;
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let usage_kind = match usage {
        Usage::Server => KeyUsage::server_auth(),
        Usage::Client => KeyUsage::client_auth(),
    };
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        UnixTime::since_unix_epoch(secs),
        usage_kind,
        None,
        None,
    )
    .map_err(|e| untrusted(format!("{e:?}")))?;
    if let Some(name) = name {
        let server_name = match name {
            San::Ip(ip) => ServerName::IpAddress((*ip).into()),
            San::Dns(d) => {
                ServerName::try_from(d.clone()).map_err(|e| untrusted(format!("{d}: {e}")))?
            }
        };
        ee.verify_is_valid_for_subject_name(&server_name)
            .map_err(|e| untrusted(format!("not valid for {name}: {e:?}")))?;
    }
    Ok(())
}
