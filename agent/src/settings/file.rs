//! `/etc/cmm/agent.toml`: its keys are the long flags. Top-level keys apply to every command
//! that has that flag; a section named for a command (`[check]`, `[bootstrap]`,
//! `[central.token]`) applies to that command only and wins over the top level. Every error is
//! collected, with its line, so `config validate` can list them all at once.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Command;
use toml::de::{DeTable, DeValue};

/// One `key = value` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The command path of its section (`["central", "token"]`); empty at the top level.
    pub section: Vec<String>,
    pub key: String,
    /// The value as clap would read it from argv (arrays give one string per element).
    pub values: Vec<String>,
    pub line: usize,
}

/// A problem in the file: where, which key, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub problem: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Line 0: the whole file (it cannot be read), so no line is named.
        let at = if self.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}", self.file, self.line)
        };
        if self.key.is_empty() {
            write!(f, "{at}: {}", self.problem)
        } else {
            write!(f, "{at}: {}: {}", self.key, self.problem)
        }
    }
}

/// The parsed file, checked against the command tree.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

/// Keys that must never be in the file, with the reason given to the user.
const REFUSED: &[(&str, &str)] = &[
    (
        "grafana-token",
        "secrets are never written in agent.toml: put the token in a 0600 file and name it with \
         grafana-token-file, or give it to the unit with LoadCredential=grafana-token:PATH",
    ),
    (
        "config",
        "the config file cannot name another config file: pass --config or CMM_CONFIG",
    ),
    ("help", "not a setting"),
    ("version", "not a setting"),
];

/// An agent.toml is a few kilobytes; a file much larger than this was named by mistake (a
/// log, `/dev/zero`), and is refused without reading the rest of it.
const MAX_BYTES: u64 = 256 * 1024;
/// Past this many problems the file is most likely not an agent.toml: the rest are counted.
const MAX_PROBLEMS: usize = 20;

/// Line numbers by byte offset, found in O(log n) (a problem per line of a long file must not
/// cost a scan of the text each).
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines(starts)
    }

    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|s| *s <= offset)
    }
}

/// `s` with control characters escaped (`\u{1b}`): a key or a value is shown on a terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The file's text: at most [`MAX_BYTES`], UTF-8.
fn read_bounded(path: &Path) -> std::io::Result<Result<String, String>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Ok(Err(format!(
            "is larger than {} KiB: an agent.toml is a few kilobytes; give the settings file \
             with --config / CMM_CONFIG",
            MAX_BYTES / 1024
        )));
    }
    Ok(String::from_utf8(bytes).map_err(|_| {
        "is not UTF-8 text: give the settings file (TOML) with --config / CMM_CONFIG".to_owned()
    }))
}

/// Read and check `path` against `cli`. `Ok(None)` when the file does not exist and was not
/// asked for by name (the default path); an unreadable file is one problem.
pub fn load(
    path: &Path,
    explicit: bool,
    cli: &Command,
) -> Result<Option<ConfigFile>, Vec<Problem>> {
    let shown = path.display().to_string();
    let text = match read_bounded(path) {
        Ok(Ok(t)) => t,
        Ok(Err(problem)) => {
            return Err(vec![Problem {
                file: shown,
                line: 0,
                key: String::new(),
                problem,
            }])
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(e) => {
            return Err(vec![Problem {
                file: shown,
                line: 0,
                key: String::new(),
                problem: format!(
                    "cannot be read ({e}): give an existing file with --config / CMM_CONFIG"
                ),
            }])
        }
    };
    parse(path, &text, cli).map(Some)
}

/// Parse `text` (the contents of `path`) and check every key; all problems at once.
pub fn parse(path: &Path, text: &str, cli: &Command) -> Result<ConfigFile, Vec<Problem>> {
    let file = path.display().to_string();
    let problem = |line: usize, key: &str, problem: String| Problem {
        file: file.clone(),
        line,
        key: printable(key),
        problem: printable(&problem),
    };
    let lines = Lines::new(text);
    let (table, errors) = DeTable::parse_recoverable(text);
    let mut problems: Vec<Problem> = errors
        .iter()
        .map(|e| {
            let line = e.span().map_or(0, |s| lines.of(s.start));
            problem(line, "", format!("not valid TOML: {}", e.message().trim()))
        })
        .collect();
    let mut entries = Vec::new();
    walk(
        cli,
        &[],
        table.get_ref(),
        &lines,
        &mut entries,
        &mut problems,
        &problem,
    );
    entries.sort_by_key(|e| e.line);
    if problems.is_empty() {
        Ok(ConfigFile {
            path: path.to_owned(),
            entries,
        })
    } else {
        problems.sort_by_key(|p| p.line);
        if problems.len() > MAX_PROBLEMS {
            let more = problems.len() - MAX_PROBLEMS;
            problems.truncate(MAX_PROBLEMS);
            problems.push(problem(
                0,
                "",
                format!("and {more} more problem(s): is this file an agent.toml?"),
            ));
        }
        Err(problems)
    }
}

#[allow(clippy::too_many_arguments)]
fn walk(
    cli: &Command,
    section: &[String],
    table: &DeTable<'_>,
    lines: &Lines,
    entries: &mut Vec<Entry>,
    problems: &mut Vec<Problem>,
    problem: &dyn Fn(usize, &str, String) -> Problem,
) {
    let here = command_at(cli, section);
    for (k, v) in table.iter() {
        let key = k.get_ref().as_ref();
        let line = lines.of(k.span().start);
        let qualified = qualify(section, key);
        if let DeValue::Table(inner) = v.get_ref() {
            let mut path = section.to_vec();
            path.push(key.to_owned());
            if here.is_some_and(|c| c.find_subcommand(key).is_some()) {
                walk(cli, &path, inner, lines, entries, problems, problem);
            } else {
                let names = here.map(subcommand_names).unwrap_or_default();
                problems.push(problem(
                    line,
                    &format!("[{}]", path.join(".")),
                    format!(
                        "no such command section: sections are named for commands ({}){}",
                        names.join(", "),
                        did_you_mean(key, &names)
                    ),
                ));
            }
            continue;
        }
        if let Some((_, why)) = REFUSED.iter().find(|(r, _)| *r == key) {
            problems.push(problem(line, &qualified, (*why).to_owned()));
            continue;
        }
        let values = match scalar_values(v.get_ref()) {
            Ok(vs) => vs,
            Err(why) => {
                problems.push(problem(line, &qualified, why));
                continue;
            }
        };
        let candidates: Vec<(Vec<String>, &Command)> = match here {
            Some(c) if !section.is_empty() => vec![(section.to_vec(), c)],
            _ => leaf_commands(cli),
        };
        let mut known = false;
        for (path, cmd) in &candidates {
            let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(key)) else {
                continue;
            };
            known = true;
            if let Err(why) = check_value(arg, &values) {
                problems.push(problem(
                    line,
                    &qualified,
                    format!("{why} (as `{}` takes it)", path.join(" ")),
                ));
                break;
            }
        }
        if !known {
            let all = all_long_flags(candidates.iter().map(|(_, c)| *c));
            let scope = if section.is_empty() {
                "no command takes this setting".to_owned()
            } else {
                format!("`{}` takes no such setting", section.join(" "))
            };
            problems.push(problem(
                line,
                &qualified,
                format!(
                    "unknown key: {scope}; keys are the long flags (`cmm-agent {} --help`){}",
                    if section.is_empty() {
                        "COMMAND".to_owned()
                    } else {
                        section.join(" ")
                    },
                    did_you_mean(key, &all)
                ),
            ));
            continue;
        }
        entries.push(Entry {
            section: section.to_vec(),
            key: key.to_owned(),
            values,
            line,
        });
    }
}

fn qualify(section: &[String], key: &str) -> String {
    if section.is_empty() {
        key.to_owned()
    } else {
        format!("[{}] {key}", section.join("."))
    }
}

fn scalar_values(v: &DeValue<'_>) -> Result<Vec<String>, String> {
    let one = |v: &DeValue<'_>| -> Result<String, String> {
        match v {
            DeValue::String(s) => Ok(s.to_string()),
            DeValue::Integer(i) if i.radix() == 10 => Ok(i.as_str().replace('_', "")),
            DeValue::Boolean(b) => Ok(b.to_string()),
            DeValue::Integer(_) => Err("write the number in decimal".into()),
            DeValue::Float(_) => Err("a number with a fraction is no setting's value: write a whole number, or a duration as a string such as \"90s\"".into()),
            DeValue::Datetime(_) => Err("a date is no setting's value: write a string".into()),
            DeValue::Array(_) | DeValue::Table(_) => Err("arrays hold strings, numbers or booleans only".into()),
        }
    };
    match v {
        DeValue::Array(items) => items.iter().map(|i| one(i.get_ref())).collect(),
        other => one(other).map(|s| vec![s]),
    }
}

/// The value the way the flag would take it on the command line: clap's own parser for the
/// flag (enums, numbers, booleans), plus CMM's duration grammar and bounds.
fn check_value(arg: &clap::Arg, values: &[String]) -> Result<(), String> {
    let multiple = matches!(
        arg.get_action(),
        clap::ArgAction::Append | clap::ArgAction::Count
    );
    if values.len() != 1 && !multiple {
        return Err(format!(
            "takes one value, not {} (write key = \"value\")",
            values.len()
        ));
    }
    let flag = matches!(
        arg.get_action(),
        clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
    );
    for v in values {
        if flag {
            if v != "true" && v != "false" {
                return Err(format!(
                    "{v:?} is not a switch's value: write true or false"
                ));
            }
            continue;
        }
        // The flag's own parser on a one-flag command (the real one may name others in its
        // `requires`, which a lone copy could not resolve).
        let probe = Command::new("cmm-agent").no_binary_name(true).arg(
            clap::Arg::new("v")
                .long("v")
                .value_parser(arg.get_value_parser().clone())
                .action(clap::ArgAction::Set),
        );
        if let Err(e) = probe.try_get_matches_from([OsString::from("--v"), OsString::from(v)]) {
            let msg = e.to_string();
            let first = msg
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .replace(" for '--v <v>'", "");
            return Err(first);
        }
        if let Some(d) = arg.get_long().and_then(super::DurationSetting::for_key) {
            d.check(v)?;
        }
        if let Some(key) = arg.get_long() {
            super::rules::check(key, v)?;
        }
    }
    Ok(())
}

/// The command at a section path (the root for the top level).
pub fn command_at<'a>(cli: &'a Command, path: &[String]) -> Option<&'a Command> {
    let mut c = cli;
    for p in path {
        c = c.find_subcommand(p)?;
    }
    Some(c)
}

fn subcommand_names(c: &Command) -> Vec<String> {
    c.get_subcommands()
        .filter(|s| s.get_name() != "help")
        .map(|s| s.get_name().to_owned())
        .collect()
}

/// Every command that takes flags (the leaves of the tree and the root's globals), with path.
pub fn leaf_commands(cli: &Command) -> Vec<(Vec<String>, &Command)> {
    fn go<'a>(c: &'a Command, path: Vec<String>, out: &mut Vec<(Vec<String>, &'a Command)>) {
        let subs: Vec<&Command> = c
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .collect();
        if subs.is_empty() || c.get_arguments().any(|a| a.get_long().is_some()) {
            out.push((path.clone(), c));
        }
        for s in subs {
            let mut p = path.clone();
            p.push(s.get_name().to_owned());
            go(s, p, out);
        }
    }
    let mut out = Vec::new();
    go(cli, Vec::new(), &mut out);
    out
}

fn all_long_flags<'a>(cmds: impl Iterator<Item = &'a Command>) -> Vec<String> {
    let mut all: Vec<String> = cmds
        .flat_map(|c| c.get_arguments().filter_map(|a| a.get_long()))
        .filter(|l| !matches!(*l, "help" | "version"))
        .map(str::to_owned)
        .collect();
    all.sort();
    all.dedup();
    all
}

/// `; did you mean `x`?` for the closest known name, if one is close.
pub fn did_you_mean(word: &str, known: &[String]) -> String {
    let normal = word.replace('_', "-").to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&normal, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<ConfigFile, Vec<Problem>> {
        parse(
            Path::new("agent.toml"),
            text,
            &crate::settings::layers::defaults_only(),
        )
    }

    #[test]
    fn a_file_that_is_no_agent_toml_is_refused_briefly() {
        let cli = crate::settings::layers::defaults_only();
        let dir = tempfile::tempdir().unwrap();
        // Larger than any agent.toml (as /dev/zero would be): one problem, the rest unread.
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'#'; (MAX_BYTES + 1) as usize]).unwrap();
        let p = load(&big, true, &cli).unwrap_err();
        assert_eq!(p.len(), 1);
        assert!(p[0].problem.contains("larger than"), "{}", p[0]);
        // A log file: a bounded list, not one problem per line.
        let log: String = (0..5000)
            .map(|i| format!("2026-12-07T03:00:{i:02} INFO something happened {i}\n"))
            .collect();
        let p = check(&log).unwrap_err();
        assert_eq!(p.len(), MAX_PROBLEMS + 1, "{}", p.len());
        assert!(p[MAX_PROBLEMS].problem.contains("more problem(s)"));
        // A control character in a key is shown escaped, never sent to the terminal.
        let p = check("\"ti\\u001bmeout\" = \"10m\"\n").unwrap_err();
        let shown = p.iter().map(ToString::to_string).collect::<String>();
        assert!(!shown.contains('\u{1b}'), "{shown:?}");
        assert!(shown.contains("\\u{1b}"), "{shown:?}");
    }

    #[test]
    fn lines_are_numbered_from_one_by_offset() {
        let l = Lines::new("a\nbb\n\nc");
        assert_eq!(
            [0, 1, 2, 4, 5, 6, 7].map(|o| l.of(o)),
            [1, 1, 2, 2, 3, 4, 4]
        );
    }

    #[test]
    fn keys_are_long_flags_at_the_top_or_in_a_command_section() {
        let f = check(
            "cluster = \"kr-mum\"\nnamespace = \"monitor\"\n\n[check]\nrepair = true\n\n[central.token]\nservice-account = \"ops\"\n",
        )
        .unwrap();
        let got: Vec<(String, String, usize)> = f
            .entries
            .iter()
            .map(|e| (e.section.join(" "), e.key.clone(), e.line))
            .collect();
        assert_eq!(
            got,
            [
                (String::new(), "cluster".into(), 1),
                (String::new(), "namespace".into(), 2),
                ("check".into(), "repair".into(), 5),
                ("central token".into(), "service-account".into(), 8),
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_line_key_and_fix() {
        let errs = check(
            "cluser = \"kr-mum\"\ntimeout = \"3 days\"\nrole = \"hub\"\ngrafana-token = \"glsa_x\"\n[chek]\nrepair = true\n",
        )
        .unwrap_err();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 5, "{shown:#?}");
        assert!(
            shown[0].starts_with("agent.toml:1: cluser: unknown key")
                && shown[0].contains("did you mean `cluster`?"),
            "{}",
            shown[0]
        );
        assert!(
            shown[1].starts_with("agent.toml:2: timeout:") && shown[1].contains("e.g."),
            "{}",
            shown[1]
        );
        assert!(
            shown[2].starts_with("agent.toml:3: role:") && shown[2].contains("hub"),
            "{}",
            shown[2]
        );
        assert!(
            shown[3].contains("grafana-token") && shown[3].contains("LoadCredential"),
            "{}",
            shown[3]
        );
        assert!(
            shown[4].contains("[chek]") && shown[4].contains("did you mean `check`?"),
            "{}",
            shown[4]
        );
        // `yes` is fix-storage's, not check's: in a [check] section it is unknown.
        let errs = check("[check]\nyes = true\n").unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .contains("`check` takes no such setting"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn bad_toml_names_its_line() {
        let errs = check("cluster = \"kr-mum\"\nnamespace = \n").unwrap_err();
        assert_eq!(errs[0].line, 2, "{errs:?}");
        assert!(errs[0].problem.contains("not valid TOML"));
    }

    #[test]
    fn arrays_only_for_repeatable_flags() {
        assert!(check("values = [\"a.yaml\", \"b.yaml\"]\n").is_ok());
        let errs = check("cluster = [\"a\", \"b\"]\n").unwrap_err();
        assert!(errs[0].problem.contains("takes one value"), "{errs:?}");
        let errs = check("grafana-retries = 2.5\n").unwrap_err();
        assert!(errs[0].problem.contains("whole number"), "{errs:?}");
    }
}
