//! `self-update`'s settings: the release feed, the repository, the tag, checked before
//! anything is contacted or changed.

use std::time::Duration;

use super::{layers, BadInput, DurationSetting};
use crate::cli::SelfUpdateArgs;
use crate::exit::{Classify, ExitCode};

/// `self-update`, typed. With `rollback` nothing else is read.
pub struct SelfUpdateSettings {
    pub rollback: bool,
    /// The releases API's base URL, without a trailing slash.
    pub feed: String,
    pub owner: String,
    pub name: String,
    pub to: Option<String>,
    pub allow_downgrade: bool,
    pub timeout: Duration,
}

impl SelfUpdateSettings {
    pub fn resolve(args: &SelfUpdateArgs) -> anyhow::Result<Self> {
        if args.rollback {
            return Ok(Self {
                rollback: true,
                feed: String::new(),
                owner: String::new(),
                name: String::new(),
                to: None,
                allow_downgrade: false,
                timeout: Duration::ZERO,
            });
        }
        let feed = check_feed(&args.update_feed)?;
        let (owner, name) = check_repo(&args.update_repo)?;
        if let Some(tag) = &args.to {
            check_tag(tag)?;
        }
        Ok(Self {
            rollback: false,
            feed,
            owner,
            name,
            to: args.to.clone(),
            allow_downgrade: args.allow_downgrade,
            timeout: DurationSetting::UpdateTimeout.parse(&args.update_timeout)?,
        })
    }
}

fn check_feed(url: &str) -> anyhow::Result<String> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "https://".len()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(BadInput(format!(
            "{} {url:?}: give the base URL of a GitHub-compatible releases API, e.g. \
             https://api.github.com",
            layers::named("update-feed")
        )))
        .classify(ExitCode::Usage);
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn check_repo(repo: &str) -> anyhow::Result<(String, String)> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((o, n)) if part_ok(o) && part_ok(n) => Ok((o.to_owned(), n.to_owned())),
        _ => Err(BadInput(format!(
            "{} {repo:?}: give OWNER/NAME of the repository whose releases to install",
            layers::named("update-repo")
        )))
        .classify(ExitCode::Usage),
    }
}

fn check_tag(tag: &str) -> anyhow::Result<()> {
    if semver_of(tag).is_none() {
        return Err(BadInput(format!(
            "{} {tag:?}: give a release tag with a version, e.g. v0.2.0",
            layers::named("to")
        )))
        .classify(ExitCode::Usage);
    }
    Ok(())
}

pub fn semver_of(tag: &str) -> Option<(u64, u64, u64)> {
    let v = tag.strip_prefix('v').unwrap_or(tag);
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    let v = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_versions() {
        assert_eq!(semver_of("v0.2.0"), Some((0, 2, 0)));
        assert_eq!(semver_of("1.10.3-rc.1"), Some((1, 10, 3)));
        assert_eq!(semver_of("nightly"), None);
        assert_eq!(semver_of("v1.2"), None);
        assert!(semver_of("v0.10.0") > semver_of("v0.9.9"));
    }

    #[test]
    fn repo_and_feed_are_checked() {
        assert!(check_repo("cmm-dev/cmm-agent").is_ok());
        for bad in ["cmm-agent", "/x", "a/b/c", "a b/c"] {
            let e = check_repo(bad).unwrap_err().to_string();
            assert!(e.contains("OWNER/NAME"), "{bad}: {e}");
        }
        assert!(check_feed("ftp://x").is_err());
        assert_eq!(check_feed("https://h/api/v3/").unwrap(), "https://h/api/v3");
    }
}
