//! Self-update's work (`cmm-agent self-update [--to TAG] [--allow-downgrade] | --rollback`):
//! replace this binary with a signed release from a GitHub-style release feed, for hosts where no package manager owns
//! it. Everything is checked before the first change: the settings, who owns the binary (dpkg,
//! rpm), whether its directory is writable, that this build trusts a release key. The archive's
//! zipsign signature is verified by the self_update crate before anything is extracted; the
//! binary it replaces is kept as `.cmm-agent.previous` beside it for `--rollback`.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::exit::{Classify, ExitCode};
use crate::settings::{BadInput, SelfUpdateSettings};
use crate::version::VERSION;

/// Release keys from `packaging/release-keys/*.pub` (see its README), compiled in.
const RELEASE_KEYS: &[self_update::VerifyingKey] =
    include!(concat!(env!("OUT_DIR"), "/release_keys.rs"));

/// testkit's fixed test key (`cmm_testkit::releases::TEST_SEED`): its private half is public on
/// purpose, so only debug builds (the test suite) trust it, never a release build.
#[cfg(debug_assertions)]
pub const TEST_KEY: self_update::VerifyingKey = [
    0x2f, 0xa5, 0xd1, 0xbf, 0x86, 0xff, 0x34, 0xb8, 0xab, 0xe8, 0x33, 0x3a, 0xeb, 0x91, 0xb9, 0x85,
    0xae, 0x88, 0xea, 0x93, 0x51, 0xf2, 0x36, 0x51, 0xf6, 0x80, 0xe5, 0x49, 0x92, 0x37, 0x6c, 0xf9,
];

fn trusted_keys() -> Vec<self_update::VerifyingKey> {
    #[allow(unused_mut)]
    let mut keys = RELEASE_KEYS.to_vec();
    #[cfg(debug_assertions)]
    keys.push(TEST_KEY);
    keys
}

/// What was done, for `--output json` and the human line.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub action: &'static str,
    pub binary: PathBuf,
    pub from: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<PathBuf>,
}

/// Update (or roll back) this binary as `s` says: every refusal first (who owns the binary,
/// whether it is writable, a trusted key, another run), then the feed.
pub async fn run(s: &SelfUpdateSettings) -> anyhow::Result<Outcome> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| anyhow::anyhow!("cannot tell where this binary is: {e}"))?;
    let previous = previous_of(&exe);
    if s.rollback {
        refuse_unless_ours(&exe)?;
        let _one_at_a_time = lock_dir(&exe)?;
        return rollback(&exe, &previous);
    }
    refuse_unless_ours(&exe)?;
    let keys = trusted_keys();
    if keys.is_empty() {
        return Err(BadInput(
            "this build trusts no release key, so it cannot verify an update: install a \
             package, or a build with a key in packaging/release-keys/"
                .to_owned(),
        ))
        .classify(ExitCode::Usage);
    }
    let guard = lock_dir(&exe)?;
    let plan = Plan {
        feed: s.feed.clone(),
        owner: s.owner.clone(),
        name: s.name.clone(),
        to: s.to.clone(),
        allow_downgrade: s.allow_downgrade,
        timeout: s.timeout,
        bounded: None,
        keys,
        exe: exe.clone(),
        previous,
    };
    let outcome = tokio::task::spawn_blocking(move || plan.apply())
        .await
        .map_err(|e| anyhow::anyhow!("the update task failed: {e}"))??;
    drop(guard);
    Ok(outcome)
}

/// Two self-updates of one binary at once would interleave their copies and renames: an
/// exclusive flock on the binary's directory (its inode stays while the file is replaced)
/// makes the second refuse at once. The lock goes with the process, also when it is killed.
fn lock_dir(exe: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let f = std::fs::File::open(dir)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |_| match Err::<(), _>(BadInput(format!(
            "another self-update of {} is running: let it finish",
            exe.display()
        )))
        .classify(ExitCode::Locked)
        {
            Err(e) => e,
            Ok(()) => unreachable!("an Err stays an Err"),
        },
    )
}

/// `.cmm-agent.previous` in the binary's own directory: the same filesystem, so putting it back
/// is one atomic rename; a dot name, so it is no command on PATH.
fn previous_of(exe: &Path) -> PathBuf {
    let name = exe
        .file_name()
        .map_or_else(|| "cmm-agent".into(), |n| n.to_string_lossy().into_owned());
    exe.with_file_name(format!(".{name}.previous"))
}

/// Which package database, if any, owns `path`: replacing a packaged file behind dpkg's or
/// rpm's back makes the next upgrade or `--verify` fight it.
fn package_owner(path: &Path) -> Option<&'static str> {
    let owned = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .arg(path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if owned("dpkg-query", &["-S"]) {
        return Some("dpkg");
    }
    if owned("rpm", &["-qf"]) {
        return Some("rpm");
    }
    None
}

fn refuse_unless_ours(exe: &Path) -> anyhow::Result<()> {
    if let Some(db) = package_owner(exe) {
        let how = match db {
            "dpkg" => "apt-get install --only-upgrade cmm-agent (or apt-get install ./cmm-agent_VERSION.deb)",
            _ => "dnf upgrade cmm-agent (or rpm -U cmm-agent-VERSION.rpm)",
        };
        return Err(BadInput(format!(
            "{} belongs to the {db} package cmm-agent: self-update would go behind the package \
             manager's back; upgrade the package instead: {how}",
            exe.display()
        )))
        .classify(ExitCode::Preflight);
    }
    let dir = exe.parent().unwrap_or(Path::new("/"));
    for p in [dir, exe] {
        if nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_err() {
            return Err(BadInput(format!(
                "{} is not writable by this user: run self-update as the binary's owner (e.g. \
                 with sudo), or install a package",
                p.display()
            )))
            .classify(ExitCode::Preflight);
        }
    }
    Ok(())
}

struct Plan {
    feed: String,
    owner: String,
    name: String,
    to: Option<String>,
    allow_downgrade: bool,
    timeout: Duration,
    /// Every request of this update: one deadline (`timeout`, in total) and a size cap. Made
    /// on the blocking thread that runs the update (its reqwest client owns a runtime).
    bounded: Option<std::sync::Arc<crate::ops::transfer::Bounded>>,
    keys: Vec<self_update::VerifyingKey>,
    exe: PathBuf,
    previous: PathBuf,
}

impl Plan {
    fn updater(&self, tag: Option<&str>) -> anyhow::Result<self_update::backends::github::Update> {
        let mut b = self_update::backends::github::Update::configure();
        b.api_base_url(&self.feed)
            .repo_owner(&self.owner)
            .repo_name(&self.name)
            .bin_name("cmm-agent")
            .bin_install_path(&self.exe)
            .current_version(VERSION)
            .verifying_keys(self.keys.clone())
            .timeout(self.timeout)
            .retries(2)
            .show_download_progress(false)
            .unattended();
        if let Some(t) = tag {
            b.release_tag(t);
        }
        if let Some(bounded) = &self.bounded {
            b.http_client(bounded.clone());
        }
        b.build()
            .map_err(|e| anyhow::anyhow!("cannot set up the update: {e}"))
    }

    /// One private work directory beside the binary for everything transient: the staged copy
    /// of the current binary and (as TMPDIR) the self_update crate's download and extraction.
    /// Removed when the run ends, whatever the outcome; one a killed run left is removed by the
    /// next (under the same flock). Nothing lands in /tmp.
    fn apply(mut self) -> anyhow::Result<Outcome> {
        self.bounded = Some(std::sync::Arc::new(crate::ops::transfer::Bounded::new(
            self.timeout,
            crate::ops::transfer::MAX_BODY,
        )?));
        let work = self.previous.with_file_name(".cmm-agent.update");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&work)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", work.display()))?;
        // The crate's temporary files follow TMPDIR (std::env::temp_dir). Set while no other
        // thread reads the environment: the runtime's workers are idle on this task.
        std::env::set_var("TMPDIR", &work);
        let result = self.apply_in(&work);
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    fn apply_in(&self, work: &Path) -> anyhow::Result<Outcome> {
        let staged = work.join("previous");
        if let Some(tag) = &self.to {
            let release = self
                .updater(None)?
                .get_release_version(tag)
                .map_err(|e| feed_error(&self.feed, e))?;
            let target = crate::settings::update::semver_of(release.version());
            let current = crate::settings::update::semver_of(VERSION);
            if target == current {
                return Ok(self.outcome("up-to-date", VERSION.into(), None));
            }
            if target < current && !self.allow_downgrade {
                return Err(BadInput(format!(
                    "{tag} ({}) is older than this binary ({VERSION}): add --allow-downgrade to \
                     install it anyway",
                    release.version()
                )))
                .classify(ExitCode::Usage);
            }
        }
        // The binary about to be replaced, copied aside first; it becomes `.previous` only once
        // the new one is in place and answers.
        std::fs::copy(&self.exe, &staged).map_err(|e| {
            anyhow::anyhow!(
                "cannot keep the current binary as {}: {e}",
                staged.display()
            )
        })?;
        let status = self.updater(self.to.as_deref())?.update_extended();
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&staged);
                return Err(feed_error(&self.feed, e));
            }
        };
        let release = match status {
            self_update::update::ReleaseStatus::UpToDate => {
                let _ = std::fs::remove_file(&staged);
                return Ok(self.outcome("up-to-date", VERSION.into(), None));
            }
            self_update::update::ReleaseStatus::Updated(r) => r,
            // The enum is non-exhaustive; a status this code does not know changed nothing
            // it can vouch for.
            other => {
                let _ = std::fs::remove_file(&staged);
                anyhow::bail!("the update ended in a state this agent does not know: {other:?}");
            }
        };
        // The new binary must at least start and say what it is; otherwise put the old one back.
        if let Err(why) = answers(&self.exe) {
            std::fs::rename(&staged, &self.exe).map_err(|e| {
                anyhow::anyhow!(
                    "the new binary does not start ({why}) and the old one could not be put \
                     back from {}: {e}",
                    staged.display()
                )
            })?;
            return Err(update_failed(format!(
                "release {} was installed but does not start ({why}); the previous binary is \
                 back in place",
                release.version()
            )));
        }
        std::fs::rename(&staged, &self.previous).map_err(|e| {
            anyhow::anyhow!("updated, but cannot keep {}: {e}", self.previous.display())
        })?;
        Ok(self.outcome(
            "updated",
            release.version().to_owned(),
            Some(self.previous.clone()),
        ))
    }

    fn outcome(&self, action: &'static str, to: String, previous: Option<PathBuf>) -> Outcome {
        Outcome {
            action,
            binary: self.exe.clone(),
            from: VERSION.to_owned(),
            to,
            previous,
        }
    }
}

/// The feed's or the archive's error, with what to do. A signature failure is said as such:
/// it is the one an admin must not retry around.
fn feed_error(feed: &str, e: self_update::errors::Error) -> anyhow::Error {
    let text = e.to_string();
    let lower = text.to_lowercase();
    let msg = if lower.contains("signature") || lower.contains("zipsign") {
        format!(
            "the release archive's signature does not verify against the keys this build \
             trusts ({text}): nothing was replaced; do not install this archive by hand"
        )
    } else {
        format!("the release feed {feed} answered with an error: {text}; nothing was replaced")
    };
    update_failed(msg)
}

fn update_failed(msg: String) -> anyhow::Error {
    match Err::<(), _>(BadInput(msg)).classify(ExitCode::Update) {
        Err(e) => e,
        Ok(()) => unreachable!("an Err stays an Err"),
    }
}

/// The version a binary says it is (`cmm-agent X` on the first line of `--version`), or why
/// it does not answer like a cmm-agent.
fn answers(exe: &Path) -> Result<String, String> {
    let out = Command::new(exe)
        .arg("--version")
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("");
    match first.strip_prefix("cmm-agent ") {
        Some(version) if out.status.success() => Ok(version.to_owned()),
        _ => Err(format!(
            "`{} --version` answered {:?}",
            exe.display(),
            text.trim()
        )),
    }
}

fn rollback(exe: &Path, previous: &Path) -> anyhow::Result<Outcome> {
    if !previous.is_file() {
        return Err(BadInput(format!(
            "no previous binary at {}: nothing to roll back to (it is kept by a successful \
             self-update)",
            previous.display()
        )))
        .classify(ExitCode::Usage);
    }
    let to = answers(previous).map_err(|why| {
        anyhow::anyhow!(
            "{} does not start ({why}): not rolling back to it",
            previous.display()
        )
    })?;
    // One rename: the previous binary takes the name; the one rolled back from is not kept
    // (a second --rollback has nothing to go back to, and says so).
    std::fs::rename(previous, exe)
        .map_err(|e| anyhow::anyhow!("cannot put {} back: {e}", previous.display()))?;
    Ok(Outcome {
        action: "rolled-back",
        binary: exe.to_owned(),
        from: VERSION.to_owned(),
        to,
        previous: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_builds_trust_the_test_key_and_release_keys_are_compiled_in() {
        let keys = trusted_keys();
        assert!(keys.contains(&TEST_KEY));
        assert_eq!(keys.len(), RELEASE_KEYS.len() + 1);
    }
}
