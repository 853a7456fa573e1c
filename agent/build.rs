//! Stamps the commit into `cmm-agent --version`: CMM_COMMIT when the packager sets it (a
//! tarball build has no .git), else `git rev-parse`, else "unknown".
#![allow(
    clippy::expect_used,
    reason = "a build script fails the build by panicking: that is its error path"
)]

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CMM_COMMIT");
    for p in ["../.git/HEAD", "../.git/refs/heads", "../.git/packed-refs"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let commit = std::env::var("CMM_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CMM_COMMIT={commit}");
    release_keys();
}

/// `packaging/release-keys/*.pub` (64 hex digits each) → `$OUT_DIR/release_keys.rs`, an array
/// of ed25519 verifying keys. A malformed file fails the build, naming it.
fn release_keys() {
    let dir = std::path::Path::new("../packaging/release-keys");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut keys = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        {
            let text = std::fs::read_to_string(&path).expect("read a release key");
            let hex = text.trim();
            assert!(
                hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
                "{}: a release key is 64 hex digits (a 32-byte ed25519 public key)",
                path.display()
            );
            let bytes: Vec<String> = (0..32)
                .map(|i| format!("0x{}", &hex[2 * i..2 * i + 2]))
                .collect();
            keys.push(format!("[{}]", bytes.join(", ")));
        }
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(
        out.join("release_keys.rs"),
        format!("&[{}]", keys.join(",\n")),
    )
    .expect("write release_keys.rs");
}
