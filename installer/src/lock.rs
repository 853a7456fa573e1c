//! One run at a time per cluster: a `coordination.k8s.io/v1` Lease in the release namespace,
//! held for the whole run by `host/pid`, renewed while running, released on every exit, and
//! taken over only once it has expired. Two admin hosts, or a timer and a person, therefore
//! never run helm (or roll back each other's helm) on the same release at once.
//!
//! The judgement is a pure function ([`judge`]) over what was read. Times in a Lease come from
//! the holder's clock; a renewTime further in the future than one lease duration can only be
//! clock skew, and is then judged the way client-go's leader election judges every lease: by
//! whether the record changes while we watch it for one lease duration (bounded), never by
//! comparing two clocks.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::kube::Connected;
use crate::{Error, Result};

/// How long a holder that stopped renewing keeps the lock. Long against clock skew and an API
/// hiccup, short enough that a crashed run blocks the next timer run for one minute only.
pub const LEASE_SECS: i32 = 60;
/// Renewal period: three chances to renew before the lease runs out.
pub const RENEW_EVERY: Duration = Duration::from_secs(20);

/// The Lease's name for a release.
pub fn lease_name(release: &str) -> String {
    format!("cmm-agent-{release}")
}

/// This process, as it appears in `holderIdentity`: `host/pid`.
pub fn holder_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host}/{}", std::process::id())
}

/// What a Lease says about the lock, judged at `now_unix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Holding {
    /// No Lease, or one nobody holds: take it.
    Free,
    /// Held by this very process (a re-entrant acquire).
    Mine,
    /// Held by someone whose lease ran out: take it over.
    Expired { holder: String, for_secs: u64 },
    /// Held and renewed within its duration: in use.
    Live {
        holder: String,
        renewed_secs_ago: u64,
        expires_in_secs: u64,
    },
    /// renewTime lies further ahead than one duration: the holder's clock is off. Decided by
    /// watching the record for one duration.
    Skewed { holder: String, ahead_secs: u64 },
}

/// Judge a Lease. Saturating arithmetic throughout: a hostile or broken timestamp can neither
/// overflow nor make a lock look held forever.
pub fn judge(lease: Option<&Lease>, me: &str, now_unix: i64) -> Holding {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Holding::Free;
    };
    let holder = match spec.holder_identity.as_deref() {
        None | Some("") => return Holding::Free,
        Some(h) => h.to_owned(),
    };
    if holder == me {
        return Holding::Mine;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECS).max(1));
    let Some(renewed) = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0.as_second())
    else {
        // Held without any time: nobody can renew it meaningfully.
        return Holding::Expired {
            holder,
            for_secs: 0,
        };
    };
    let age = now_unix.saturating_sub(renewed);
    if age < -duration {
        return Holding::Skewed {
            holder,
            ahead_secs: age.unsigned_abs(),
        };
    }
    let left = duration.saturating_sub(age.max(0));
    if left > 0 {
        Holding::Live {
            holder,
            renewed_secs_ago: age.max(0) as u64,
            expires_in_secs: left as u64,
        }
    } else {
        Holding::Expired {
            holder,
            for_secs: left.unsigned_abs(),
        }
    }
}

/// The lock, held. Renewed in the background until [`LockGuard::release`]; if renewal finds
/// the lock taken by someone else, `lost` is cancelled so the run stops.
pub struct LockGuard {
    api: Api<Lease>,
    name: String,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
    /// Cancelled when the lock was lost while running.
    pub lost: CancellationToken,
    /// Who held it before us, when we took over an expired lease.
    pub took_over: Option<String>,
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl Connected {
    fn lock_err(&self, name: &str, ns: &str) -> impl Fn(kube::Error) -> Error + '_ {
        let what = format!("the run lock (Lease {ns}/{name})");
        move |e| self.api_err(what.clone())(e)
    }

    /// Take the lock of `release` in `namespace` for `holder`, or say who holds it.
    pub async fn acquire_lock(
        &self,
        namespace: &str,
        release: &str,
        holder: &str,
    ) -> Result<LockGuard> {
        let api = Api::<Lease>::namespaced(self.client.clone(), namespace);
        let name = lease_name(release);
        let err = self.lock_err(&name, namespace);
        // Two attempts: a 409 means another run wrote between our read and our write; the
        // second read shows who.
        for _ in 0..2 {
            let current = api.get_opt(&name).await.map_err(&err)?;
            let mut holding = judge(current.as_ref(), holder, unix_now());
            if let Holding::Skewed { .. } = holding {
                holding = self.observe(&api, &name, current.as_ref()).await?;
            }
            let took_over = match &holding {
                Holding::Live {
                    holder: other,
                    renewed_secs_ago,
                    expires_in_secs,
                } => {
                    return Err(Error::Locked {
                        lease: format!("{namespace}/{name}"),
                        holder: other.clone(),
                        detail: format!(
                            "renewed {renewed_secs_ago}s ago, expires in {expires_in_secs}s \
                             unless renewed"
                        ),
                    })
                }
                Holding::Skewed { holder: other, .. } => {
                    return Err(Error::Locked {
                        lease: format!("{namespace}/{name}"),
                        holder: other.clone(),
                        detail: "it kept renewing while we watched (its clock is ahead of \
                                 ours: fix NTP on that host)"
                            .into(),
                    })
                }
                Holding::Expired { holder: other, .. } => Some(other.clone()),
                Holding::Free | Holding::Mine => None,
            };
            let transitions = current
                .as_ref()
                .and_then(|l| l.spec.as_ref())
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0);
            let spec = LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                lease_duration_seconds: Some(LEASE_SECS),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(transitions.saturating_add(i32::from(took_over.is_some()))),
                ..Default::default()
            };
            let written = match current {
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(namespace.to_owned()),
                            labels: Some(
                                [(
                                    "app.kubernetes.io/managed-by".to_owned(),
                                    "cmm-agent".to_owned(),
                                )]
                                .into(),
                            ),
                            ..Default::default()
                        },
                        spec: Some(spec),
                    };
                    api.create(&PostParams::default(), &lease).await
                }
                Some(mut lease) => {
                    // resourceVersion stays set: the API server refuses the write (409) if
                    // anyone changed the Lease since we read it.
                    lease.spec = Some(spec);
                    api.replace(&name, &PostParams::default(), &lease).await
                }
            };
            match written {
                Ok(_) => {
                    if let Some(prev) = &took_over {
                        tracing::warn!(lease = %name, previous = %prev, "took over an expired run lock");
                    }
                    return Ok(self.guard(api, name, holder.to_owned(), took_over));
                }
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(err(e)),
            }
        }
        let current = api.get_opt(&name).await.map_err(&err)?;
        let holder_now = current
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        Err(Error::Locked {
            lease: format!("{namespace}/{name}"),
            holder: holder_now,
            detail: "it was taken while we tried to take it".into(),
        })
    }

    /// Watch a Lease whose times cannot be trusted for one lease duration: a holder that is
    /// alive renews it (its resourceVersion changes); a dead one does not.
    async fn observe(&self, api: &Api<Lease>, name: &str, seen: Option<&Lease>) -> Result<Holding> {
        let before = seen.and_then(|l| l.metadata.resource_version.clone());
        let holder = seen
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        let wait = seen
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.lease_duration_seconds)
            .unwrap_or(LEASE_SECS)
            .clamp(1, LEASE_SECS * 2);
        tracing::warn!(lease = %name, %holder, wait_secs = wait, "the run lock's renewTime is ahead of this host's clock; watching it for one lease duration");
        tokio::time::sleep(Duration::from_secs(wait as u64 + 1)).await;
        let now = api
            .get_opt(name)
            .await
            .map_err(self.api_err(format!("re-reading the run lock (Lease {name})")))?;
        let after = now
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        Ok(if now.is_none() {
            Holding::Free
        } else if after == before {
            Holding::Expired {
                holder,
                for_secs: 0,
            }
        } else {
            Holding::Skewed {
                holder,
                ahead_secs: 0,
            }
        })
    }

    fn guard(
        &self,
        api: Api<Lease>,
        name: String,
        holder: String,
        took_over: Option<String>,
    ) -> LockGuard {
        let stop = CancellationToken::new();
        let lost = CancellationToken::new();
        let renewer = tokio::spawn(renew_loop(
            api.clone(),
            name.clone(),
            holder.clone(),
            stop.clone(),
            lost.clone(),
        ));
        LockGuard {
            api,
            name,
            holder,
            renewer,
            stop,
            lost,
            took_over,
        }
    }
}

async fn renew_loop(
    api: Api<Lease>,
    name: String,
    holder: String,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RENEW_EVERY) => {}
        }
        match renew_once(&api, &name, &holder).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %name, "the run lock was taken by another run; stopping");
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(lease = %name, error = %e, "could not renew the run lock; retrying");
                if last_ok.elapsed() >= Duration::from_secs(LEASE_SECS as u64) {
                    tracing::error!(lease = %name, "the run lock expired without renewal; stopping");
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

/// `Ok(false)` when the Lease is no longer ours.
async fn renew_once(api: &Api<Lease>, name: &str, holder: &str) -> kube::Result<bool> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(holder) {
        return Ok(false);
    }
    spec.renew_time = Some(now_micro());
    api.replace(name, &PostParams::default(), &lease)
        .await
        .map(|_| true)
}

impl LockGuard {
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Stop renewing and give the lock up (holder cleared, so the next run takes it at once).
    /// Bounded: an API that does not answer leaves the lease to expire on its own.
    pub async fn release(self) -> Result<()> {
        self.stop.cancel();
        let _ = self.renewer.await;
        let api = self.api.clone();
        let (name, holder) = (self.name.clone(), self.holder.clone());
        let give_up = async move {
            let Some(mut lease) = api.get_opt(&name).await? else {
                return Ok(());
            };
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(holder.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = Some(now_micro());
            spec.lease_duration_seconds = Some(1);
            api.replace(&name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(Duration::from_secs(10), give_up).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::KubeUnreachable {
                url: String::new(),
                message: format!(
                    "releasing the run lock {}: {e}; it expires by itself within {LEASE_SECS}s",
                    self.name
                ),
            }),
            Err(_) => Err(Error::KubeUnreachable {
                url: String::new(),
                message: format!(
                    "releasing the run lock {} timed out; it expires by itself within {LEASE_SECS}s",
                    self.name
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: Option<i64>, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(duration),
                renew_time: renewed.map(|s| MicroTime(jiff::Timestamp::from_second(s).unwrap())),
                ..Default::default()
            }),
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_lease_is_free_mine_live_or_expired() {
        assert_eq!(judge(None, "a/1", NOW), Holding::Free);
        assert_eq!(
            judge(Some(&lease(None, Some(NOW), 60)), "a/1", NOW),
            Holding::Free
        );
        assert_eq!(
            judge(Some(&lease(Some("a/1"), Some(NOW - 5), 60)), "a/1", NOW),
            Holding::Mine
        );
        assert_eq!(
            judge(Some(&lease(Some("b/2"), Some(NOW - 20), 60)), "a/1", NOW),
            Holding::Live {
                holder: "b/2".into(),
                renewed_secs_ago: 20,
                expires_in_secs: 40
            }
        );
        assert_eq!(
            judge(Some(&lease(Some("b/2"), Some(NOW - 90), 60)), "a/1", NOW),
            Holding::Expired {
                holder: "b/2".into(),
                for_secs: 30
            }
        );
    }

    #[test]
    fn clock_skew_never_overflows_nor_holds_forever() {
        // Slightly ahead (within one duration): live, expiring within one duration from now.
        let h = judge(Some(&lease(Some("b/2"), Some(NOW + 30), 60)), "a/1", NOW);
        assert!(
            matches!(
                h,
                Holding::Live {
                    expires_in_secs: 60,
                    ..
                }
            ),
            "{h:?}"
        );
        // Far ahead: skew, to be decided by watching, not by the clocks.
        let far = jiff::Timestamp::MAX.as_second();
        let h = judge(Some(&lease(Some("b/2"), Some(far), 60)), "a/1", NOW);
        assert!(matches!(h, Holding::Skewed { .. }), "{h:?}");
        // Far behind: long expired, no overflow.
        let past = jiff::Timestamp::MIN.as_second();
        let h = judge(Some(&lease(Some("b/2"), Some(past), i32::MAX)), "a/1", NOW);
        assert!(matches!(h, Holding::Expired { .. }), "{h:?}");
    }
}
