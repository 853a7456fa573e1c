//! `cmm-agent self-update` end to end: a copy of the real binary in a scratch directory updates
//! itself from a fake GitHub releases API on 127.0.0.1 (testkit::releases) serving good,
//! tampered, unsigned, foreign-key and older archives. Asserts what an admin would see: the
//! binary replaced or byte-for-byte untouched, the previous one kept and put back, no stray
//! files, the refusals' words and exit codes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test and bench helpers fail by panicking, and a test walks a person's whole path in order"
)]

use std::path::{Path, PathBuf};
use std::process::Output;

use cmm_testkit::releases::{archive, asset_name, FakeReleases, Signing};

const BIN: &str = env!("CARGO_BIN_EXE_cmm-agent");
const OWNER: &str = "cmm-dev";
const REPO: &str = "cmm-agent";

/// The running build's target triple, as `--version` reports it (the asset name carries it).
fn target() -> String {
    let out = std::process::Command::new(BIN)
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("target: "))
        .expect("--version names the target")
        .to_owned()
}

/// A scratch install: `DIR/bin/cmm-agent`, a copy of the binary under test.
struct Install {
    _dir: tempfile::TempDir,
    bin_dir: PathBuf,
    exe: PathBuf,
}

impl Install {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir(&bin_dir).unwrap();
        let exe = bin_dir.join("cmm-agent");
        std::fs::copy(BIN, &exe).unwrap();
        // An empty settings file, so the host's /etc/cmm/agent.toml plays no part.
        std::fs::write(dir.path().join("agent.toml"), "").unwrap();
        Install {
            _dir: dir,
            bin_dir,
            exe,
        }
    }

    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.bin_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    async fn run(&self, args: &[&str]) -> Output {
        run_as(&self.exe, args, false).await
    }
}

async fn run_as(exe: &Path, args: &[&str], nobody: bool) -> Output {
    let mut cmd = if nobody {
        let mut c = tokio::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(exe);
        c
    } else {
        tokio::process::Command::new(exe)
    };
    cmd.arg("self-update")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "CMM_CONFIG",
            exe.parent().unwrap().parent().unwrap().join("agent.toml"),
        )
        .env("CMM_UPDATE_REPO", format!("{OWNER}/{REPO}"))
        .env("CMM_UPDATE_TIMEOUT", "30s");
    output(&mut cmd).await
}

/// Run `cmd`, retrying while its freshly written binary is still open for writing in a child
/// another test thread forked meanwhile (ETXTBSY lasts until that child execs).
async fn output(cmd: &mut tokio::process::Command) -> Output {
    for _ in 0..50 {
        match cmd.output().await {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => return other.unwrap(),
        }
    }
    panic!("{cmd:?} stayed busy (ETXTBSY) for a second")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn script(version: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho 'cmm-agent {version}'\n").into_bytes()
}

async fn feed_with(tag: &str, payload: &[u8], signing: Signing) -> FakeReleases {
    let feed = FakeReleases::start(OWNER, REPO).await.unwrap();
    let name = asset_name(tag.trim_start_matches('v'), &target());
    let bytes = archive(&name, payload, signing).unwrap();
    feed.publish(tag, vec![(name, bytes)]);
    feed
}

#[tokio::test]
async fn a_signed_newer_release_replaces_the_binary_and_rollback_puts_the_old_one_back() {
    let install = Install::new();
    let original = std::fs::read(&install.exe).unwrap();
    // The new release is this same binary with a marker appended (an ELF runs with trailing
    // bytes), so it can roll itself back.
    let mut payload = original.clone();
    payload.extend_from_slice(b"\n# cmm-agent release 0.2.0 marker\n");
    let feed = feed_with("v0.2.0", &payload, Signing::Good).await;

    let out = install.run(&["--update-feed", &feed.url]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("updated from 0.1.0 to 0.2.0"), "{t}");
    assert_eq!(
        std::fs::read(&install.exe).unwrap(),
        payload,
        "the binary is the release"
    );
    let previous = install.bin_dir.join(".cmm-agent.previous");
    assert_eq!(
        std::fs::read(&previous).unwrap(),
        original,
        "the old binary is kept"
    );
    assert_eq!(
        install.files(),
        [".cmm-agent.previous", "cmm-agent"],
        "no stray files"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&install.exe).unwrap().permissions(),
    );
    assert_eq!(mode & 0o111, 0o111, "still executable: {mode:o}");
    // The download went to the API asset URL asking for the bytes, as GitHub requires.
    assert!(
        feed.requests()
            .iter()
            .any(|r| r.contains("/releases/assets/") && r.contains("application/octet-stream")),
        "{:?}",
        feed.requests()
    );

    let out = install.run(&["--rollback"]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("rolled back"), "{t}");
    assert_eq!(std::fs::read(&install.exe).unwrap(), original);
    assert_eq!(install.files(), ["cmm-agent"]);

    let out = install.run(&["--rollback"]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("nothing to roll back to"), "{t}");
}

#[tokio::test]
async fn tampered_unsigned_and_foreign_archives_change_nothing() {
    for signing in [Signing::Tampered, Signing::Unsigned, Signing::OtherKey] {
        let install = Install::new();
        let original = std::fs::read(&install.exe).unwrap();
        let feed = feed_with("v0.2.0", &script("0.2.0"), signing).await;
        let out = install.run(&["--update-feed", &feed.url]).await;
        let t = text(&out);
        assert_eq!(out.status.code(), Some(14), "{signing:?}: {t}");
        assert!(t.contains("signature does not verify"), "{signing:?}: {t}");
        assert!(t.contains("nothing was replaced"), "{signing:?}: {t}");
        assert_eq!(
            std::fs::read(&install.exe).unwrap(),
            original,
            "{signing:?}"
        );
        assert_eq!(
            install.files(),
            ["cmm-agent"],
            "{signing:?}: no stray files"
        );
    }
}

#[tokio::test]
async fn an_older_release_is_installed_only_when_asked_by_tag_and_allowed() {
    let install = Install::new();
    let original = std::fs::read(&install.exe).unwrap();
    let feed = feed_with("v0.0.9", &script("0.0.9"), Signing::Good).await;
    // What a run killed mid-download leaves: its work directory, cleared by the next run.
    let stale = install.bin_dir.join(".cmm-agent.update");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("cmm-agent-0.2.0.tar.gz"), b"half a download").unwrap();

    let out = install.run(&["--update-feed", &feed.url]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("0.1.0 is the newest release"), "{t}");
    assert_eq!(std::fs::read(&install.exe).unwrap(), original);
    assert_eq!(
        install.files(),
        ["cmm-agent"],
        "the stale work directory is gone"
    );

    let out = install
        .run(&["--update-feed", &feed.url, "--to", "v0.0.9"])
        .await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("older than this binary") && t.contains("--allow-downgrade"),
        "{t}"
    );
    assert_eq!(std::fs::read(&install.exe).unwrap(), original);
    assert_eq!(install.files(), ["cmm-agent"]);

    let out = install
        .run(&[
            "--update-feed",
            &feed.url,
            "--to",
            "v0.0.9",
            "--allow-downgrade",
        ])
        .await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(std::fs::read(&install.exe).unwrap(), script("0.0.9"));
}

#[tokio::test]
async fn bad_settings_and_an_unreachable_feed_are_refused_before_any_change() {
    let install = Install::new();
    let original = std::fs::read(&install.exe).unwrap();
    for (args, words) in [
        (vec!["--update-feed", "ftp://mirror"], "update-feed"),
        (vec!["--update-repo", "just-a-name"], "OWNER/NAME"),
        (vec!["--to", "nightly"], "give a release tag with a version"),
        (vec!["--update-timeout", "0s"], "update-timeout"),
    ] {
        let out = install.run(&args).await;
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(words), "{args:?}: {t}");
    }
    let out = install
        .run(&["--update-feed", &cmm_testkit::dead_url()])
        .await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(14), "{t}");
    assert!(t.contains("nothing was replaced"), "{t}");
    assert_eq!(std::fs::read(&install.exe).unwrap(), original);
    assert_eq!(install.files(), ["cmm-agent"]);
}

#[tokio::test]
async fn a_binary_this_user_cannot_replace_is_refused() {
    let install = Install::new();
    let is_root = nix::unistd::geteuid().is_root();
    use std::os::unix::fs::PermissionsExt;
    if is_root {
        // root may write anywhere: run the copy as nobody, whom its directory does not let in.
        for p in [install.bin_dir.parent().unwrap(), install.bin_dir.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    } else {
        std::fs::set_permissions(&install.bin_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let out = run_as(
        &install.exe,
        &["--update-feed", &cmm_testkit::dead_url()],
        is_root,
    )
    .await;
    let t = text(&out);
    std::fs::set_permissions(&install.bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(out.status.code(), Some(6), "{t}");
    assert!(t.contains("is not writable by this user"), "{t}");
}

#[tokio::test]
async fn a_second_self_update_of_the_same_binary_refuses_while_one_runs() {
    let install = Install::new();
    // What a running self-update holds: an exclusive flock on the binary's directory.
    let dir = std::fs::File::open(&install.bin_dir).unwrap();
    let held = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let out = install
        .run(&["--update-feed", &cmm_testkit::dead_url()])
        .await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(12), "{t}");
    assert!(t.contains("another self-update"), "{t}");
    drop(held);
    let out = install.run(&["--rollback"]).await;
    assert_eq!(out.status.code(), Some(2), "free again: {}", text(&out));
}

/// rpm's answer decides as dpkg's does (the .deb case runs for real in package_cli.rs). No rpm
/// database owns anything on this Debian host, so `rpm` here is a stand-in on PATH that answers
/// `rpm -qf PATH` the way rpm does for an owned file: the package name, exit 0.
#[tokio::test]
async fn a_binary_the_rpm_database_owns_is_refused() {
    let install = Install::new();
    let stubs = tempfile::tempdir().unwrap();
    let rpm = stubs.path().join("rpm");
    std::fs::write(
        &rpm,
        "#!/bin/sh\n[ \"$1\" = -qf ] && { echo cmm-agent-0.1.0-1.x86_64; exit 0; }\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rpm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        stubs.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = output(
        tokio::process::Command::new(&install.exe)
            .args(["self-update", "--update-feed", &cmm_testkit::dead_url()])
            .env_clear()
            .env("PATH", path)
            .env(
                "CMM_CONFIG",
                install.bin_dir.parent().unwrap().join("agent.toml"),
            ),
    )
    .await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(6), "{t}");
    assert!(t.contains("belongs to the rpm package cmm-agent"), "{t}");
    assert!(t.contains("dnf upgrade cmm-agent"), "{t}");
}

/// A download that never ends, fast or trickling, is stopped by the size cap or by
/// update-timeout counted over the whole update; nothing is replaced and nothing is left.
#[tokio::test]
async fn an_endless_or_trickling_download_is_cut_off_and_changes_nothing() {
    use cmm_testkit::releases::Stream;
    // The endless one gets time enough for the cap to be what stops it, even on a busy host.
    for (stream, timeout, says) in [
        (Stream::Endless, "120s", "larger than 128 MiB"),
        (Stream::Trickle, "2s", "within update-timeout (2s in total)"),
    ] {
        let install = Install::new();
        let original = std::fs::read(&install.exe).unwrap();
        let feed = feed_with("v0.2.0", &script("0.2.0"), Signing::Good).await;
        feed.stream_assets(stream);
        let started = std::time::Instant::now();
        let out = install
            .run(&["--update-feed", &feed.url, "--update-timeout", timeout])
            .await;
        let t = text(&out);
        assert_eq!(out.status.code(), Some(14), "{stream:?}: {t}");
        assert!(t.contains(says), "{stream:?}: {t}");
        assert!(t.contains("nothing was replaced"), "{stream:?}: {t}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(150),
            "{stream:?}: not bounded"
        );
        assert_eq!(std::fs::read(&install.exe).unwrap(), original);
        assert_eq!(install.files(), ["cmm-agent"], "{stream:?}: no stray files");
    }
}
