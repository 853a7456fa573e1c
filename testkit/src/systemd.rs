//! Not a fake: a real systemd booted as PID 1 in new PID and mount namespaces over a Debian
//! root (tests/systemd/root.sh, ../shared/notes/systemd-in-a-namespace.md). The network is
//! shared, so units reach the fakes on 127.0.0.1.
//!
//! [`Systemd::boot_scratch`] boots over an overlay of the root: everything the test changes
//! (packages installed, /etc edited) lands in a temporary upper directory and is gone when the
//! test ends, so the shared root stays as root.sh made it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The Debian root from `CMM_SYSTEMD_ROOT`; `None` (the test skips, saying so) unless
/// `CMM_REQUIRE_SYSTEMD` or `CI=true` is set, where a missing root fails the test.
pub fn root_or_skip(test: &str) -> Option<PathBuf> {
    named_root_or_skip("CMM_SYSTEMD_ROOT", "tests/systemd/root.sh", test)
}

/// The Debian 11 root (glibc 2.31, systemd 247) from `CMM_SYSTEMD_ROOT_BULLSEYE`, as
/// [`root_or_skip`].
pub fn bullseye_root_or_skip(test: &str) -> Option<PathBuf> {
    named_root_or_skip(
        "CMM_SYSTEMD_ROOT_BULLSEYE",
        "tests/systemd/root.sh bullseye",
        test,
    )
}

fn named_root_or_skip(var: &str, builder: &str, test: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(r) if Path::new(&r).join("lib/systemd/systemd").exists() => Some(PathBuf::from(r)),
        _ if std::env::var_os("CMM_REQUIRE_SYSTEMD").is_some() => {
            panic!("{test}: CMM_REQUIRE_SYSTEMD is set but {var} holds no Debian root ({builder})")
        }
        _ => {
            crate::skip(test, &format!("no {var} ({builder} builds one, as root)"));
            None
        }
    }
}

/// Hide `rel` (a path inside the root) from a scratch boot: an overlay whiteout, the 0/0
/// character device overlayfs reads as "deleted in this layer".
pub fn whiteout(upper: &Path, rel: &str) {
    let path = upper.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("whiteout's directory");
    }
    let ok = std::process::Command::new("mknod")
        .arg(&path)
        .args(["c", "0", "0"])
        .status()
        .expect("mknod");
    assert!(ok.success(), "mknod a whiteout for {rel}");
}

pub struct Systemd {
    unshare: std::process::Child,
    pid: String,
    /// The overlay's upper and work directories (scratch boots only).
    _scratch: Option<tempfile::TempDir>,
}

impl Systemd {
    /// Boot over an overlay of `lower`. `seed` first writes into the overlay's empty upper
    /// directory (paths as inside: `upper/etc/cmm/agent.toml`), before it is mounted. Nothing
    /// written, before or inside, reaches `lower`.
    pub fn boot_scratch(lower: &Path, seed: impl FnOnce(&Path)) -> Self {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let upper = scratch.path().join("upper");
        std::fs::create_dir_all(&upper).expect("upper dir");
        // The root's journal keeps every earlier boot, and a boot in a namespace has the host's
        // boot id, so `journalctl -b` would mix in earlier runs: hidden, this boot's journal
        // lives in /run.
        whiteout(&upper, "var/log/journal");
        seed(&upper);
        let s = scratch.path().display();
        let m = format!("{s}/merged");
        let script = format!(
            "mkdir -p {s}/work {m} && mount -t overlay overlay \
             -o lowerdir={},upperdir={s}/upper,workdir={s}/work {m} && {}",
            lower.display(),
            Self::enter(&m)
        );
        Self::start(script, Some(scratch))
    }

    fn enter(r: &str) -> String {
        format!(
            "mount -t proc proc {r}/proc && mount --rbind /sys {r}/sys && mount --rbind /dev \
             {r}/dev && exec chroot {r} /lib/systemd/systemd --system"
        )
    }

    fn start(script: String, scratch: Option<tempfile::TempDir>) -> Self {
        let unshare = std::process::Command::new("unshare")
            .args([
                "--fork",
                "--pid",
                "--mount",
                "--uts",
                "--mount-proc",
                "bash",
                "-c",
            ])
            .arg(script)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("unshare");
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = loop {
            let o = std::process::Command::new("pgrep")
                .args(["-P", &unshare.id().to_string()])
                .output()
                .unwrap();
            let p = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            // Until it has exec'd systemd inside the chroot, entering it would see the host.
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            if !p.is_empty() && comm.trim() == "systemd" {
                break p;
            }
            assert!(Instant::now() < deadline, "systemd did not start");
            std::thread::sleep(Duration::from_millis(100));
        };
        let s = Self {
            unshare,
            pid,
            _scratch: scratch,
        };
        // Its bus socket appears a moment after PID 1 starts; until then systemctl says
        // "offline" or cannot connect.
        let mut state = String::new();
        for _ in 0..60 {
            state = s.sh("timeout 60 systemctl is-system-running --wait");
            if state.contains("running") || state.contains("degraded") {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            state.contains("running") || state.contains("degraded"),
            "boot: {state}"
        );
        s
    }

    /// Run a shell command inside, bounded; stdout and stderr together.
    pub fn sh(&self, cmd: &str) -> String {
        self.sh_status(cmd).1
    }

    /// The same, with the exit status.
    pub fn sh_status(&self, cmd: &str) -> (Option<i32>, String) {
        let o = std::process::Command::new("timeout")
            .args([
                "300", "nsenter", "-t", &self.pid, "-m", "-p", "-u", "-r", "-w", "--", "sh", "-c",
                cmd,
            ])
            .output()
            .expect("nsenter");
        (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    pub fn wait_for(&self, what: &str, secs: u64, ok: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !ok() {
            assert!(Instant::now() < deadline, "{what} within {secs}s");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        let _ = self.sh("systemctl poweroff");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.unshare.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = std::process::Command::new("kill")
            .args(["-9", &self.pid])
            .status();
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}
