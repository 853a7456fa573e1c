//! Making the CA and the certificates it signs.

use std::net::IpAddr;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::{Error, Result};

/// The CA lives long (it is the one thing every cluster trusts) and is rotated by overlap.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// A year: renewed by `check --repair` well before, so a stopped timer has months to be noticed.
pub const LEAF_VALIDITY_DAYS: i64 = 365;
/// Issued slightly in the past so a node whose clock is a little behind still accepts it.
/// Certificates start this long before they are made, for clocks a little behind ours.
pub const BACKDATE_SECS: i64 = 300;
const BACKDATE: Duration = Duration::seconds(BACKDATE_SECS);

/// A subject alternative name of a server certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(untagged)]
pub enum San {
    Ip(IpAddr),
    Dns(String),
}

impl San {
    /// An address as an operator writes it: an IP literal, else a DNS name.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        let valid = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(Error::Invalid(format!(
                "{s:?} is neither an IP address nor a DNS name: give the address the central \
                 Grafana uses to reach this cluster (e.g. 10.0.0.11 or prom.kr-mum.example)"
            )));
        }
        Ok(San::Dns(s.to_ascii_lowercase()))
    }
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Ip(ip) => write!(f, "{ip}"),
            San::Dns(d) => write!(f, "{d}"),
        }
    }
}

/// A certificate and its private key, as PEM. The key is a secret: it goes into a Kubernetes
/// Secret or Grafana's secureJsonData and nowhere else, so `Debug` does not show it.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"***")
            .finish()
    }
}

/// What [`Ca::issue_server`] and [`Ca::issue_client`] give back.
pub type Issued = Leaf;

/// The CMM CA: its certificate and key.
pub struct Ca {
    leaf: Leaf,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.leaf.cert_pem)
            .finish()
    }
}

fn at(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

fn gen_err(e: rcgen::Error) -> Error {
    Error::Generate(e.to_string())
}

impl Ca {
    /// A new CA valid from `now` for [`CA_VALIDITY_DAYS`]. Its name carries its birth time, so
    /// two generations (during a rotation) are told apart in every report.
    pub fn generate(now: SystemTime) -> Result<Self> {
        Self::generate_for(
            now,
            Duration::seconds(CA_VALIDITY_DAYS * crate::clock::day_secs() as i64),
        )
    }

    pub fn generate_for(now: SystemTime, validity: Duration) -> Result<Self> {
        let key = KeyPair::generate().map_err(gen_err)?;
        let now = at(now);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "CMM");
        dn.push(
            DnType::CommonName,
            format!("CMM CA {}", now.unix_timestamp()),
        );
        params.distinguished_name = dn;
        // Path length 0: the CA signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - BACKDATE;
        params.not_after = now + validity;
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Ok(Self {
            leaf: Leaf {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
            key,
        })
    }

    /// The CA kept in a Secret. Refuses a key that does not match the certificate, so a
    /// half-restored Secret cannot mint certificates nobody trusts.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::Key {
            what: "the CA key".into(),
            problem: e.to_string(),
        })?;
        let info = crate::inspect(cert_pem, "the CA certificate")?;
        if !info.is_ca {
            return Err(Error::Invalid(format!(
                "{} is not a CA certificate (no basicConstraints CA:true)",
                info.subject
            )));
        }
        if info.public_key_der != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(Error::KeyMismatch);
        }
        Ok(Self {
            leaf: Leaf {
                cert_pem: cert_pem.to_owned(),
                key_pem: key_pem.to_owned(),
            },
            key,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.leaf.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.leaf.key_pem
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>> {
        Issuer::from_ca_cert_pem(&self.leaf.cert_pem, &self.key).map_err(gen_err)
    }

    /// A server certificate for `cluster` valid for exactly `sans` (at least one).
    pub fn issue_server(&self, cluster: &str, sans: &[San], now: SystemTime) -> Result<Leaf> {
        if sans.is_empty() {
            return Err(Error::Invalid(format!(
                "the server certificate of {cluster} needs at least one address (SAN): the \
                 address the central Grafana reaches it at"
            )));
        }
        let mut params = leaf_params(cluster, now)?;
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s {
                San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                San::Dns(d) => d.as_str().try_into().map(SanType::DnsName).map_err(gen_err),
            })
            .collect::<Result<_>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate whose common name is `name` (the proxy in front of each
    /// Prometheus admits clients by it).
    pub fn issue_client(&self, name: &str, now: SystemTime) -> Result<Leaf> {
        let mut params = leaf_params(name, now)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<Leaf> {
        let key = KeyPair::generate().map_err(gen_err)?;
        let cert = params.signed_by(&key, &self.issuer()?).map_err(gen_err)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn leaf_params(common_name: &str, now: SystemTime) -> Result<CertificateParams> {
    let now = at(now);
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "CMM");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    // ECDSA keys sign the handshake; they never encipher keys.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after =
        now + Duration::seconds(LEAF_VALIDITY_DAYS * crate::clock::day_secs() as i64);
    Ok(params)
}
