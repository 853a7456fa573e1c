//! The .deb and .rpm (`scripts/dev package`) with the real package tools: what they hold,
//! inspected with dpkg-deb and rpm; the .deb installed with apt into a Debian root booted with
//! a real systemd (timer enabled and firing, check inside the hardened unit against the fakes,
//! upgrade keeps an edited config, remove and purge clean up); the .rpm installed into a
//! scratch root with `rpm --root` (scriptlets run), upgraded and erased.
//!
//! Packages are looked for in target/<triple>/debian/ and target/<triple>/generate-rpm/ for
//! both static builds (x86_64 and aarch64, musl); without them these tests skip, unless CMM_REQUIRE_PACKAGES is set (scripts/dev test builds them first).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test and bench helpers fail by panicking, and a test walks a person's whole path in order"
)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cmm_testkit::grafana::ADMIN_TOKEN;
use cmm_testkit::scene::drifted_cluster;
use cmm_testkit::systemd::{whiteout, Systemd};

/// The static x86_64 build's packages, and the aarch64 build's.
struct Packages {
    deb: PathBuf,
    rpm: PathBuf,
    deb_arm64: PathBuf,
    rpm_aarch64: PathBuf,
}

const X86_64: &str = "x86_64-unknown-linux-musl";
const AARCH64: &str = "aarch64-unknown-linux-musl";

fn packages(test: &str) -> Option<Packages> {
    let root = support::workspace_root();
    let find = |target: &str, dir: &str, ext: &str| -> Option<PathBuf> {
        std::fs::read_dir(root.join("target").join(target).join(dir))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == ext))
    };
    match (
        find(X86_64, "debian", "deb"),
        find(X86_64, "generate-rpm", "rpm"),
        find(AARCH64, "debian", "deb"),
        find(AARCH64, "generate-rpm", "rpm"),
    ) {
        (Some(deb), Some(rpm), Some(deb_arm64), Some(rpm_aarch64)) => Some(Packages {
            deb,
            rpm,
            deb_arm64,
            rpm_aarch64,
        }),
        _ if std::env::var_os("CMM_REQUIRE_PACKAGES").is_some() => {
            panic!("{test}: CMM_REQUIRE_PACKAGES is set but no packages were built (scripts/dev package)")
        }
        _ => {
            cmm_testkit::skip(
                test,
                "no packages in target/<triple>/ (scripts/dev package)",
            );
            None
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{cmd} {args:?}: {text}");
    text
}

/// Files (not directories) of the .deb, as installed paths, with Debian's places mapped to
/// the rpm's where the two distributions differ by convention.
fn deb_files(deb: &Path) -> BTreeSet<String> {
    run("dpkg-deb", &["--contents", deb.to_str().unwrap()])
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| {
            let p = p.trim_start_matches('.');
            p.replacen("/lib/systemd/", "/usr/lib/systemd/", 1)
                .replace("/zsh/vendor-completions/", "/zsh/site-functions/")
        })
        // Debian's copyright file has no rpm twin (rpm carries the licence in its header).
        .filter(|p| p != "/usr/share/doc/cmm-agent/copyright")
        .collect()
}

fn rpm_files(rpm: &Path) -> BTreeSet<String> {
    run("rpm", &["-qpl", rpm.to_str().unwrap()])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn both_packages_hold_the_same_files_the_embedded_values_and_a_config_kept_on_upgrade() {
    let Some(p) = packages(module_path!()) else {
        return;
    };
    let (deb, rpm) = (p.deb.to_str().unwrap(), p.rpm.to_str().unwrap());

    let files = deb_files(&p.deb);
    assert_eq!(files, rpm_files(&p.rpm), "the .deb and .rpm differ");
    for must in [
        "/usr/bin/cmm-agent",
        "/usr/lib/systemd/system/cmm-agent-check.service",
        "/usr/lib/systemd/system/cmm-agent-check.timer",
        "/etc/cmm/agent.toml",
        "/usr/share/cmm/values/each_cluster.yaml",
        "/usr/share/cmm/values/central_monitor.yaml",
        "/usr/share/cmm/values/central_content.yaml",
        "/usr/share/cmm/values/overlays/wsl.yaml",
        "/usr/share/man/man1/cmm-agent-check.1",
        "/usr/share/bash-completion/completions/cmm-agent",
        "/usr/share/zsh/site-functions/_cmm-agent",
        "/usr/share/fish/vendor_completions.d/cmm-agent.fish",
        "/usr/share/doc/cmm-agent/docs/operations.md",
    ] {
        assert!(files.contains(must), "{must} missing: {files:#?}");
    }
    // Every `docs/…` link of the installed README resolves to an installed file.
    let readme = std::fs::read_to_string(support::workspace_root().join("README.md")).unwrap();
    for link in readme.split("](docs/").skip(1) {
        let target = link.split([')', '#']).next().unwrap();
        let installed = format!("/usr/share/doc/cmm-agent/docs/{target}");
        assert!(
            files.contains(&installed),
            "README links docs/{target}: {installed} is not installed"
        );
    }

    // The config file is kept on upgrade in both formats; scriptlets and dependencies.
    let info = run("dpkg-deb", &["--info", deb]);
    assert!(info.contains("ca-certificates"), "{info}");
    for s in ["postinst", "prerm", "postrm"] {
        assert!(info.contains(s), "no {s}: {info}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let ctrl = tmp.path().join("ctrl");
    run("dpkg-deb", &["-e", deb, ctrl.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(ctrl.join("conffiles"))
            .unwrap()
            .trim(),
        "/etc/cmm/agent.toml"
    );
    assert_eq!(run("rpm", &["-qpc", rpm]).trim(), "/etc/cmm/agent.toml");
    let scripts = run("rpm", &["-qp", "--scripts", rpm]);
    for s in [
        "postinstall scriptlet",
        "preuninstall scriptlet",
        "postuninstall scriptlet",
    ] {
        assert!(scripts.contains(s), "no {s}: {scripts}");
    }
    assert!(run("rpm", &["-qpR", rpm]).contains("ca-certificates"));
    let rpm_info = run("rpm", &["-qpi", rpm]);
    assert!(rpm_info.contains("Version     : 0.1.0"), "{rpm_info}");

    // Unpacked: the values are the bytes the packaged binary embeds and the repository's
    // values/ (what plain-helm users take), byte for byte.
    let x = tmp.path().join("x");
    run("dpkg-deb", &["-x", deb, x.to_str().unwrap()]);
    let bin = x.join("usr/bin/cmm-agent");
    let embedded = tmp.path().join("embedded");
    let conf = tmp.path().join("empty.toml");
    std::fs::write(&conf, "").unwrap();
    run(
        bin.to_str().unwrap(),
        &[
            "--config",
            conf.to_str().unwrap(),
            "generate-assets",
            embedded.to_str().unwrap(),
        ],
    );
    let repo = support::workspace_root().join("values");
    for f in [
        "each_cluster.yaml",
        "central_monitor.yaml",
        "central_content.yaml",
        "overlays/wsl.yaml",
        "overlays/kube-metrics.yaml",
        "overlays/managed-control-plane.yaml",
        "overlays/node-exporter-full.yaml",
        "overlays/push.yaml",
        "overlays/central-receiver.yaml",
        "overlays/thanos-query.yaml",
    ] {
        let shipped = std::fs::read(x.join("usr/share/cmm/values").join(f)).unwrap();
        assert_eq!(
            shipped,
            std::fs::read(embedded.join("values").join(f)).unwrap(),
            "{f}"
        );
        assert_eq!(shipped, std::fs::read(repo.join(f)).unwrap(), "{f}");
    }

    // --version: version, commit, chart and minimum helm.
    let version = run(bin.to_str().unwrap(), &["--version"]);
    assert!(version.starts_with("cmm-agent 0.1.0\n"), "{version}");
    assert!(
        version.contains("chart: kube-prometheus-stack 66.1.0"),
        "{version}"
    );
    assert!(version.contains("helm: 3.12 or newer"), "{version}");
    let commit = version
        .lines()
        .find_map(|l| l.strip_prefix("commit: "))
        .unwrap();
    assert!(commit.len() >= 7 && commit != "unknown", "{version}");

    // A man page for every command the help lists, and completions that know them.
    let help = run(bin.to_str().unwrap(), &["--help"]);
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line starts with two spaces; its wrapped description with more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.contains(&"self-update"), "{commands:?}");
    for c in &commands {
        let page = x.join(format!("usr/share/man/man1/cmm-agent-{c}.1"));
        assert!(page.is_file(), "no man page for {c}");
    }
    let bash =
        std::fs::read_to_string(x.join("usr/share/bash-completion/completions/cmm-agent")).unwrap();
    assert!(bash.contains("self-update") && bash.contains("--update-feed"));

    // A release build trusts no test key: self-update refuses before touching the network.
    let copy = tmp.path().join("bin/cmm-agent");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(&bin, &copy).unwrap();
    let o = Command::new(&copy)
        .args([
            "--config",
            conf.to_str().unwrap(),
            "self-update",
            "--update-feed",
        ])
        .arg(cmm_testkit::dead_url())
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("trusts no release key"), "{t}");

    // Both packages carry the same binary.
    let rx = tmp.path().join("rx");
    std::fs::create_dir_all(&rx).unwrap();
    let extract = Command::new("sh")
        .arg("-c")
        .arg(format!("rpm2cpio {rpm} | cpio -idm --quiet"))
        .current_dir(&rx)
        .status()
        .unwrap();
    assert!(extract.success());
    assert_eq!(
        std::fs::read(rx.join("usr/bin/cmm-agent")).unwrap(),
        std::fs::read(&bin).unwrap(),
        "the .rpm's binary is not the .deb's"
    );
}

/// A newer .deb from the built one: version 0.1.1-1 and a changed agent.toml, repacked with
/// dpkg-deb (what a release with a new default in the config file looks like to dpkg).
fn newer_deb(deb: &Path, out: &Path) -> PathBuf {
    let tree = out.join("tree");
    run(
        "dpkg-deb",
        &["-R", deb.to_str().unwrap(), tree.to_str().unwrap()],
    );
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    std::fs::write(
        &control,
        text.replace("Version: 0.1.0-1", "Version: 0.1.1-1"),
    )
    .unwrap();
    let conf = tree.join("etc/cmm/agent.toml");
    let mut c = std::fs::read_to_string(&conf).unwrap();
    c.push_str("\n# 0.1.1: a new comment in the packaged file\n");
    std::fs::write(&conf, c).unwrap();
    let newer = out.join("cmm-agent_0.1.1-1_amd64.deb");
    run(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "-b",
            tree.to_str().unwrap(),
            newer.to_str().unwrap(),
        ],
    );
    newer
}

/// The systemd tier for the .deb: apt-get install, not configured, configured, upgrade,
/// remove, purge — in a Debian booted with systemd, over an overlay of the shared root.
#[tokio::test]
async fn the_deb_installs_runs_its_timer_upgrades_keeping_the_edit_and_removes_and_purges() {
    let Some(root) = cmm_testkit::systemd::root_or_skip(module_path!()) else {
        return;
    };
    let Some(p) = packages(module_path!()) else {
        return;
    };
    let Some(prom) = cmm_testkit::prometheus::start("package-deb", "kr-mum").await else {
        return;
    };
    let port = prom.port();
    let kube = drifted_cluster(port).await;
    let grafana = cmm_testkit::fake_grafana!();
    let host = tempfile::tempdir().unwrap();
    let kubeconfig = kube.write_kubeconfig(host.path(), "kr-mum");
    let newer = newer_deb(&p.deb, host.path());

    let deb = p.deb.clone();
    let grafana_url = grafana.url.clone();
    let sd = tokio::task::spawn_blocking(move || {
        let sd = Systemd::boot_scratch(&root, |up| {
            whiteout(up, "var/lib/cmm-agent");
            whiteout(up, "var/lib/private/cmm-agent");
            let pkgs = up.join("root/pkgs");
            std::fs::create_dir_all(&pkgs).unwrap();
            std::fs::copy(&deb, pkgs.join("cmm-agent_0.1.0-1_amd64.deb")).unwrap();
            std::fs::copy(&newer, pkgs.join("cmm-agent_0.1.1-1_amd64.deb")).unwrap();
            std::fs::copy(&kubeconfig, pkgs.join("kubeconfig")).unwrap();
        });
        let apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                   -o Dpkg::Options::=--force-confold";
        let (code, out) = sd.sh_status(&format!("{apt} /root/pkgs/cmm-agent_0.1.0-1_amd64.deb"));
        assert_eq!(code, Some(0), "apt-get install: {out}");

        // Installed: the timer is enabled and waiting, the credentials exist empty and
        // root-only, the binary refuses to self-update behind dpkg's back.
        assert_eq!(sd.sh("systemctl is-enabled cmm-agent-check.timer").trim(), "enabled");
        assert_eq!(sd.sh("systemctl is-active cmm-agent-check.timer").trim(), "active");
        let perms = sd.sh("stat -c '%a %U %s' /etc/cmm/grafana-token /etc/cmm/kubeconfig");
        assert_eq!(perms.trim(), "600 root 0\n600 root 0", "{perms}");
        let (code, out) = sd.sh_status("/usr/bin/cmm-agent self-update");
        assert_eq!(code, Some(6), "{out}");
        assert!(out.contains("belongs to the dpkg package cmm-agent"), "{out}");

        // Not configured yet: the timer's run says so and the unit stays green (degraded).
        let (_, fired) = sd.sh_status(&format!(
            "{SHORT_TIMER} && systemctl daemon-reload && systemctl restart cmm-agent-check.timer"
        ));
        let runs = |sd: &Systemd| {
            sd.sh("journalctl -u cmm-agent-check.service -o cat --no-pager")
                .matches("Finished cmm-agent-check.service")
                .count()
        };
        sd.wait_for("the packaged timer fires", 60, || runs(&sd) > 0);
        let journal = sd.sh("journalctl -u cmm-agent-check.service -o cat --no-pager");
        assert!(journal.contains("not configured: edit /etc/cmm/agent.toml"), "{fired}{journal}");
        assert!(!journal.contains("Failed with result"), "{journal}");
        sd.sh("systemctl stop cmm-agent-check.timer");

        // Configured: token and kubeconfig as root-only files, agent.toml edited. The check in
        // the hardened unit (a DynamicUser) reaches the fakes and repairs the datasource.
        sd.sh(&format!(
            "printf %s '{ADMIN_TOKEN}' > /etc/cmm/grafana-token && \
             cat /root/pkgs/kubeconfig > /etc/cmm/kubeconfig && \
             printf 'cluster = \"kr-mum\"\\ngrafana-url = \"{grafana_url}\"\\ngrafana-retries = 2\\n\
             first-scrape-wait = \"30s\"\\ninsecure-plain-http = true\\n# edited by the admin\\n' >> /etc/cmm/agent.toml"
        ));
        let (code, out) = sd.sh_status("/usr/bin/cmm-agent config validate");
        assert_eq!(code, Some(0), "{out}");
        sd.sh("systemctl start cmm-agent-check.service");
        let journal = sd.sh("journalctl -u cmm-agent-check.service -o cat --no-pager");
        assert!(journal.contains(r#""code":"degraded","exit":1"#), "{journal}");
        assert!(journal.contains("re-registered"), "{journal}");
        assert!(!journal.contains(ADMIN_TOKEN), "token in the journal");
        let user = sd.sh(
            "journalctl _SYSTEMD_UNIT=cmm-agent-check.service _COMM=cmm-agent -o verbose \
             --no-pager | grep -m1 ' _UID='",
        );
        assert!(user.contains("_UID="), "no line of the agent's own: {user}");
        assert!(!user.contains("_UID=0"), "the check ran as root: {user}");

        // A newer build: the edit is kept (its new file beside it), the timer still enabled.
        let (code, out) = sd.sh_status(&format!("{apt} /root/pkgs/cmm-agent_0.1.1-1_amd64.deb"));
        assert_eq!(code, Some(0), "upgrade: {out}");
        assert!(sd.sh("dpkg-query -W cmm-agent").contains("0.1.1-1"));
        assert!(sd.sh("cat /etc/cmm/agent.toml").contains("# edited by the admin"));
        assert!(sd.sh("cat /etc/cmm/agent.toml.dpkg-dist").contains("# 0.1.1:"));
        assert_eq!(sd.sh("systemctl is-enabled cmm-agent-check.timer").trim(), "enabled");
        sd
    })
    .await
    .unwrap();
    assert_eq!(
        grafana.datasources().len(),
        1,
        "the check did not reach Grafana"
    );

    tokio::task::spawn_blocking(move || {
        // Remove: timer and binary gone, config kept.
        let (code, out) =
            sd.sh_status("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q cmm-agent");
        assert_eq!(code, Some(0), "remove: {out}");
        assert!(!sd
            .sh("systemctl is-enabled cmm-agent-check.timer")
            .contains("enabled\n"));
        assert!(!sd
            .sh("systemctl list-timers --all --no-pager")
            .contains("cmm-agent-check"));
        assert!(sd
            .sh("test -e /usr/bin/cmm-agent && echo present")
            .is_empty());
        assert!(sd
            .sh("cat /etc/cmm/agent.toml")
            .contains("# edited by the admin"));
        // Reinstall after the removal: dpkg calls postinst with the last configured version,
        // as for an upgrade; the timer the removal disabled is enabled and running again.
        let (code, out) = sd.sh_status(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
             -o Dpkg::Options::=--force-confold /root/pkgs/cmm-agent_0.1.1-1_amd64.deb",
        );
        assert_eq!(code, Some(0), "reinstall: {out}");
        assert_eq!(
            sd.sh("systemctl is-enabled cmm-agent-check.timer").trim(),
            "enabled"
        );
        assert_eq!(
            sd.sh("systemctl is-active cmm-agent-check.timer").trim(),
            "active"
        );
        let (code, out) =
            sd.sh_status("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q cmm-agent");
        assert_eq!(code, Some(0), "remove again: {out}");
        // Purge: config, credentials and state gone.
        let (code, out) =
            sd.sh_status("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q cmm-agent");
        assert_eq!(code, Some(0), "purge: {out}");
        let left = sd.sh(
            "ls -d /etc/cmm /var/lib/private/cmm-agent /var/lib/cmm-agent \
             /var/lib/cmm-agent-package 2>/dev/null",
        );
        assert!(left.trim().is_empty(), "purge left: {left}");
        drop(sd);
    })
    .await
    .unwrap();
}

/// Debian 11 (glibc 2.31, systemd 247), the oldest Debian the mirror still serves: the static
/// .deb installs with apt, its timer fires, and the hardened unit's check reaches the fakes
/// with its credentials from LoadCredential=. Then the route a systemd older than 247 takes by
/// itself (postinst, forced here with CMM_LEGACY_CREDENTIALS=1 as no older systemd can be had):
/// the check runs as the static user cmm-agent, which owns the two 0600 files, and repairs.
#[tokio::test]
async fn on_debian_11_the_static_deb_runs_its_timer_and_the_older_systemd_route_works() {
    let Some(root) = cmm_testkit::systemd::bullseye_root_or_skip(module_path!()) else {
        return;
    };
    let Some(p) = packages(module_path!()) else {
        return;
    };
    let Some(prom) = cmm_testkit::prometheus::start("package-bullseye", "kr-mum").await else {
        return;
    };
    let kube = drifted_cluster(prom.port()).await;
    let grafana = cmm_testkit::fake_grafana!();
    let host = tempfile::tempdir().unwrap();
    let kubeconfig = kube.write_kubeconfig(host.path(), "kr-mum");
    let deb = p.deb.clone();
    let grafana_url = grafana.url.clone();
    let sd = tokio::task::spawn_blocking(move || {
        let sd = Systemd::boot_scratch(&root, |up| {
            whiteout(up, "var/lib/cmm-agent");
            whiteout(up, "var/lib/private/cmm-agent");
            let pkgs = up.join("root/pkgs");
            std::fs::create_dir_all(&pkgs).unwrap();
            std::fs::copy(&deb, pkgs.join("cmm-agent_0.1.0-1_amd64.deb")).unwrap();
            std::fs::copy(&kubeconfig, pkgs.join("kubeconfig")).unwrap();
        });
        // The host is what the test says it is.
        assert!(sd.sh("systemctl --version").starts_with("systemd 247"));
        assert!(sd.sh("ldd --version").contains("2.31"));
        let (code, out) = sd.sh_status(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/pkgs/cmm-agent_0.1.0-1_amd64.deb",
        );
        assert_eq!(code, Some(0), "apt-get install: {out}");
        assert_eq!(sd.sh("systemctl is-active cmm-agent-check.timer").trim(), "active");
        // No older-systemd route on 247: the unit's own credentials.
        assert!(sd
            .sh("ls /etc/systemd/system/cmm-agent-check.service.d 2>/dev/null")
            .trim()
            .is_empty());
        sd.sh(&format!(
            "printf %s '{ADMIN_TOKEN}' > /etc/cmm/grafana-token && \
             cat /root/pkgs/kubeconfig > /etc/cmm/kubeconfig && \
             printf 'cluster = \"kr-mum\"\\ngrafana-url = \"{grafana_url}\"\\ngrafana-retries = 2\\n\
             first-scrape-wait = \"30s\"\\ninsecure-plain-http = true\\n' >> /etc/cmm/agent.toml"
        ));
        // The timer fires the hardened unit: degraded (drifted release), datasource repaired.
        sd.sh(&format!(
            "{SHORT_TIMER} && systemctl daemon-reload && systemctl restart cmm-agent-check.timer"
        ));
        // systemd 247 says "Finished <Description>." without the unit's name: the agent's own
        // last line (its verdict and exit status) marks the run's end instead.
        let ran = |sd: &Systemd| {
            sd.sh("journalctl -u cmm-agent-check.service -o cat --no-pager")
                .contains(r#""exit":"#)
        };
        let fired = std::time::Instant::now();
        while !ran(&sd) && fired.elapsed() < std::time::Duration::from_secs(90) {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        assert!(
            ran(&sd),
            "the packaged timer did not run the check within 90s: {}{}",
            sd.sh("systemctl list-timers --all --no-pager; systemctl status cmm-agent-check.service --no-pager"),
            sd.sh("journalctl -u cmm-agent-check.service -o cat --no-pager")
        );
        sd.sh("systemctl stop cmm-agent-check.timer");
        let journal = sd.sh("journalctl -u cmm-agent-check.service -o cat --no-pager");
        assert!(journal.contains(r#""code":"degraded","exit":1"#), "{journal}");
        assert!(journal.contains("re-registered"), "{journal}");
        assert!(!journal.contains(ADMIN_TOKEN), "token in the journal");
        sd
    })
    .await
    .unwrap();
    assert_eq!(
        grafana.datasources().len(),
        1,
        "the check did not reach Grafana"
    );

    // The older-systemd route: the package configured again as on systemd < 247.
    grafana.drop_group("cmm-kr-mum", "cluster-health");
    let sd = tokio::task::spawn_blocking(move || {
        let (code, out) = sd.sh_status(
            "CMM_LEGACY_CREDENTIALS=1 DEBIAN_FRONTEND=noninteractive dpkg-reconfigure cmm-agent",
        );
        assert_eq!(code, Some(0), "reconfigure: {out}");
        let dropin = sd.sh(
            "cat /etc/systemd/system/cmm-agent-check.service.d/10-cmm-legacy-credentials.conf",
        );
        assert!(dropin.contains("User=cmm-agent"), "{dropin}");
        let perms = sd.sh("stat -c '%a %U' /etc/cmm/grafana-token /etc/cmm/kubeconfig");
        assert_eq!(perms.trim(), "600 cmm-agent\n600 cmm-agent", "{perms}");
        // Nobody else reads them.
        let (code, _) = sd.sh_status("setpriv --reuid=65534 --regid=65534 --clear-groups cat /etc/cmm/grafana-token");
        assert_ne!(code, Some(0), "another user read the token");

        sd.sh("systemctl daemon-reload && systemctl start cmm-agent-check.service");
        let id = sd.sh("systemctl show -p InvocationID --value cmm-agent-check.service");
        let run = sd.sh(&format!(
            "journalctl _SYSTEMD_INVOCATION_ID={} -o cat --no-pager",
            id.trim()
        ));
        let uid = sd.sh("id -u cmm-agent");
        let owner = sd.sh(&format!(
            "journalctl _SYSTEMD_INVOCATION_ID={} _COMM=cmm-agent -o verbose --no-pager | grep -m1 ' _UID='",
            id.trim()
        ));
        assert!(owner.contains(&format!("_UID={}", uid.trim())), "not run as cmm-agent: {owner}");
        assert!(!run.contains("not configured"), "{run}");
        assert!(run.contains(r#""exit":1"#) || run.contains(r#""exit":0"#), "{run}");
        assert!(!run.contains(ADMIN_TOKEN), "token in the journal");
        sd
    })
    .await
    .unwrap();
    assert!(
        !grafana.rules("cmm-kr-mum", "cluster-health").is_empty(),
        "the static user's check did not repair the rule group"
    );
    drop(sd);
}

/// A drop-in (printed by this shell command) that makes the packaged timer fire a second
/// after it starts, instead of every 15 minutes.
const SHORT_TIMER: &str = "mkdir -p /etc/systemd/system/cmm-agent-check.timer.d && printf \
    '[Timer]\\nOnBootSec=\\nOnUnitActiveSec=\\nOnCalendar=\\nRandomizedDelaySec=0\\nOnActiveSec=1s\\n' \
    > /etc/systemd/system/cmm-agent-check.timer.d/test.conf";

/// A newer .rpm from the same metadata: version 0.1.1 and a changed agent.toml, built by
/// cargo-generate-rpm with its metadata overwritten from a TOML file.
fn newer_rpm(out: &Path) -> Option<PathBuf> {
    let ws = support::workspace_root();
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(ws.join("agent/Cargo.toml")).unwrap()).unwrap();
    let mut meta = manifest["package"]["metadata"]["generate-rpm"]
        .as_table()
        .unwrap()
        .clone();
    let conf = out.join("agent.toml");
    let mut c = std::fs::read_to_string(ws.join("packaging/agent.toml")).unwrap();
    c.push_str("\n# 0.1.1: a new comment in the packaged file\n");
    std::fs::write(&conf, c).unwrap();
    meta.insert("version".into(), "0.1.1".into());
    for a in meta["assets"].as_array_mut().unwrap() {
        let a = a.as_table_mut().unwrap();
        if a["dest"].as_str() == Some("/etc/cmm/agent.toml") {
            a.insert("source".into(), conf.display().to_string().into());
        }
    }
    let file = out.join("newer.toml");
    std::fs::write(&file, toml::to_string(&meta).unwrap()).unwrap();
    let rpm = out.join("cmm-agent-0.1.1-1.x86_64.rpm");
    let o = Command::new("cargo")
        .args(["generate-rpm", "-p", "agent", "--target", X86_64, "-o"])
        .arg(&rpm)
        .arg(format!("--metadata-overwrite={}", file.display()))
        .current_dir(&ws)
        .output()
        .ok()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(rpm)
}

/// The .rpm into a scratch root (an overlay of the Debian root, so its scriptlets have a shell
/// and systemctl): install enables the timer, an upgrade keeps the edited config with the new
/// one as .rpmnew, erase removes binary and timer and keeps the edit as .rpmsave.
#[test]
fn the_rpm_installs_into_a_scratch_root_upgrades_keeping_the_edit_and_erases() {
    let Some(root) = cmm_testkit::systemd::root_or_skip(module_path!()) else {
        return;
    };
    let Some(p) = packages(module_path!()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let newer = newer_rpm(tmp.path()).expect("cargo generate-rpm");
    // --nodeps: the Debian root's rpm database knows nothing of /bin/sh or libc, which dpkg
    // installed; everything else rpm does (files, config handling, scriptlets) is real.
    let script = format!(
        r#"set -e
s={s}; mkdir -p $s/upper $s/work $s/m
mount -t overlay overlay -o lowerdir={root},upperdir=$s/upper,workdir=$s/work $s/m
r=$s/m
rpm --root $r --initdb
rpm --root $r -i --nodeps {old}
echo "installed: $(rpm --root $r -q cmm-agent)"
test -L $r/etc/systemd/system/timers.target.wants/cmm-agent-check.timer && echo "timer: enabled"
stat -c 'credentials: %a %s' $r/etc/cmm/grafana-token $r/etc/cmm/kubeconfig
echo '# edited by the admin' >> $r/etc/cmm/agent.toml
rpm --root $r -U --nodeps {new}
echo "upgraded: $(rpm --root $r -q cmm-agent)"
grep -q 'edited by the admin' $r/etc/cmm/agent.toml && echo "edit: kept"
grep -q '0.1.1:' $r/etc/cmm/agent.toml.rpmnew && echo "rpmnew: the new one"
test -L $r/etc/systemd/system/timers.target.wants/cmm-agent-check.timer && echo "timer: still enabled"
rpm --root $r -e cmm-agent
test -e $r/usr/bin/cmm-agent || echo "binary: gone"
test -e $r/etc/systemd/system/timers.target.wants/cmm-agent-check.timer || echo "timer: gone"
test -e $r/usr/lib/systemd/system/cmm-agent-check.service || echo "units: gone"
grep -q 'edited by the admin' $r/etc/cmm/agent.toml.rpmsave && echo "rpmsave: the edit"
rpm --root $r -q cmm-agent || echo "erased"
"#,
        s = tmp.path().display(),
        root = root.display(),
        old = p.rpm.display(),
        new = newer.display(),
    );
    let o = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    for line in [
        "installed: cmm-agent-0.1.0-1",
        "timer: enabled",
        "credentials: 600 0",
        "upgraded: cmm-agent-0.1.1-1",
        "edit: kept",
        "rpmnew: the new one",
        "timer: still enabled",
        "binary: gone",
        "timer: gone",
        "units: gone",
        "rpmsave: the edit",
        "erased",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
}

/// The shipped timer has one recurring schedule: two (OnCalendar beside OnUnitActiveSec, as
/// before) run the check twice as often, the runs racing for the same cluster.
#[test]
fn the_timer_has_one_schedule_and_catches_up() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/cmm-agent-check.timer"),
    )
    .unwrap();
    let keys: Vec<&str> = unit
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let schedules: Vec<&&str> = keys
        .iter()
        .filter(|k| {
            matches!(
                **k,
                "OnCalendar"
                    | "OnUnitActiveSec"
                    | "OnUnitInactiveSec"
                    | "OnBootSec"
                    | "OnStartupSec"
                    | "OnActiveSec"
            )
        })
        .collect();
    assert_eq!(schedules, [&"OnCalendar"], "{unit}");
    assert!(unit.contains("Persistent=true"), "{unit}");
}

/// Both architectures' packages: the same files, their own architecture in the metadata, and a
/// binary for that machine with nothing to load at start (no interpreter, no shared library),
/// so it runs whatever libc the host has. docs/operations.md says so; hold it to the binaries.
#[test]
fn both_architectures_ship_the_same_files_with_a_static_binary_each() {
    let Some(p) = packages(module_path!()) else {
        return;
    };
    assert_eq!(deb_files(&p.deb), deb_files(&p.deb_arm64));
    assert_eq!(rpm_files(&p.rpm), rpm_files(&p.rpm_aarch64));
    let arch = |deb: &Path| {
        run(
            "dpkg-deb",
            &["--field", deb.to_str().unwrap(), "Architecture"],
        )
    };
    assert_eq!(arch(&p.deb).trim(), "amd64");
    assert_eq!(arch(&p.deb_arm64).trim(), "arm64");
    let rpm_arch = |rpm: &Path| run("rpm", &["-qp", "--qf", "%{ARCH}", rpm.to_str().unwrap()]);
    assert_eq!(rpm_arch(&p.rpm), "x86_64");
    assert_eq!(rpm_arch(&p.rpm_aarch64), "aarch64");

    let tmp = tempfile::tempdir().unwrap();
    for (deb, machine) in [(&p.deb, "X86-64"), (&p.deb_arm64, "AArch64")] {
        let x = tmp.path().join(machine);
        run(
            "dpkg-deb",
            &["-x", deb.to_str().unwrap(), x.to_str().unwrap()],
        );
        let bin = x.join("usr/bin/cmm-agent");
        let header = run("readelf", &["--file-header", bin.to_str().unwrap()]);
        assert!(header.contains(machine), "not {machine}: {header}");
        let segments = run("readelf", &["--program-headers", bin.to_str().unwrap()]);
        assert!(
            !segments.contains("INTERP"),
            "{machine}: needs a loader: {segments}"
        );
        let dynamic = run("readelf", &["--dynamic", bin.to_str().unwrap()]);
        assert!(
            !dynamic.contains("(NEEDED)"),
            "{machine}: needs shared libraries: {dynamic}"
        );
        let size = std::fs::metadata(&bin).unwrap().len();
        assert!(
            size <= 12 * 1024 * 1024,
            "{machine}: {size} bytes, over the 12 MiB a small binary may take"
        );
    }
    let docs =
        std::fs::read_to_string(support::workspace_root().join("docs/operations.md")).unwrap();
    assert!(
        docs.contains("**statically linked**"),
        "docs/operations.md must say the binary is **statically linked**"
    );
}
