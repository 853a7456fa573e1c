//! helm's version, remembered per binary. `helm version` costs a run 50-60 ms of CPU and its
//! answer changes only when the binary does, so it is kept in one small file of the agent's
//! cache directory, keyed by the binary's resolved path, size, modification time and inode. A
//! replaced or upgraded helm has another key and is asked again. Any problem reading or
//! writing the cache only means helm is asked: the cache never decides anything by itself.

use std::path::{Path, PathBuf};

/// The cache file's name inside the agent's cache directory.
pub const FILE: &str = "helm-version";

/// The most the cache file may hold: one line per helm binary a host has used.
const MAX_BYTES: u64 = 16 * 1024;

/// The binary `bin` names: itself when it has a directory part, else the first match on PATH.
pub fn resolve(bin: &Path, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    if bin.components().count() > 1 {
        return Some(bin.to_owned());
    }
    std::env::split_paths(path_var?)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// What identifies one helm binary's contents, cheaply: path, size, mtime (ns) and inode.
pub fn key(resolved: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let canonical = std::fs::canonicalize(resolved).ok()?;
    let m = std::fs::metadata(&canonical).ok()?;
    Some(format!(
        "{}\t{}\t{}.{}\t{}",
        canonical.display(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    ))
}

/// The remembered version for `key`, if any.
pub fn lookup(dir: &Path, key: &str) -> Option<String> {
    let path = dir.join(FILE);
    if std::fs::metadata(&path).ok()?.len() > MAX_BYTES {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.rsplit_once('\t')?;
        (k == key).then(|| v.to_owned())
    })
}

/// Remember `version` for `key`, replacing the file at once (a concurrent reader sees the old
/// file or the new one, never half of one). Errors are ignored: the next run asks helm again.
pub fn store(dir: &Path, key: &str, version: &str) {
    let _ = try_store(dir, key, version);
}

fn try_store(dir: &Path, key: &str, version: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(FILE);
    let kept: Vec<String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.rsplit_once('\t').is_some_and(|(k, _)| k != key))
        .map(str::to_owned)
        .collect();
    // Newest last; old binaries fall off the front so the file stays small.
    let mut lines: Vec<String> = kept.into_iter().rev().take(15).collect();
    lines.reverse();
    lines.push(format!("{key}\t{version}"));
    let tmp = dir.join(format!(".{FILE}.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(lines.join("\n").as_bytes())?;
    f.write_all(b"\n")?;
    drop(f);
    std::fs::rename(&tmp, &path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_remembered_per_binary_and_forgotten_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("helm");
        std::fs::write(&bin, b"one").unwrap();
        let cache = dir.path().join("cache");
        let k1 = key(&bin).unwrap();
        assert_eq!(lookup(&cache, &k1), None);
        store(&cache, &k1, "v3.17.3");
        assert_eq!(lookup(&cache, &k1).as_deref(), Some("v3.17.3"));
        // Another binary in place: another key, not found.
        std::fs::write(&bin, b"a longer binary").unwrap();
        let k2 = key(&bin).unwrap();
        assert_ne!(k1, k2);
        assert_eq!(lookup(&cache, &k2), None);
        store(&cache, &k2, "v3.18.0");
        assert_eq!(lookup(&cache, &k2).as_deref(), Some("v3.18.0"));
        assert_eq!(lookup(&cache, &k1).as_deref(), Some("v3.17.3"));
        // An oversized file is not read.
        std::fs::write(cache.join(FILE), vec![b'x'; 20_000]).unwrap();
        assert_eq!(lookup(&cache, &k2), None);
    }

    #[test]
    fn a_bare_name_is_found_on_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("helm"), b"x").unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(
            resolve(Path::new("helm"), Some(&path)),
            Some(dir.path().join("helm"))
        );
        assert_eq!(resolve(Path::new("nothere"), Some(&path)), None);
        assert_eq!(
            resolve(Path::new("/opt/helm"), None),
            Some(PathBuf::from("/opt/helm"))
        );
    }
}
