//! The layering ARCHITECTURE.md draws, held where the compiler does not hold it: a command
//! never imports another command, and the library (`ops`) and the renderer never read a clap
//! struct (they take typed settings).

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn sources(dir: &str) -> Vec<(PathBuf, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
        let mut out = Vec::new();
        let mut pending = vec![root];
        while let Some(d) = pending.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    pending.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    out.push((p, text));
                }
            }
        }
        assert!(!out.is_empty(), "no sources under src/{dir}");
        out
    }

    /// Code lines that name `pattern` (comments left out).
    fn naming(text: &str, pattern: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .filter(|l| l.contains(pattern))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    #[test]
    fn commands_import_no_command() {
        for (path, text) in sources("cmd") {
            if path.ends_with("mod.rs") {
                continue; // the dispatcher names every command
            }
            let hits = naming(&text, "crate::cmd::");
            assert!(
                hits.is_empty(),
                "{} imports a command: {hits:?}",
                path.display()
            );
        }
    }

    #[test]
    fn the_library_and_the_renderer_read_no_clap_struct() {
        for dir in ["ops", "render"] {
            for (path, text) in sources(dir) {
                let mut hits = naming(&text, "crate::cli");
                hits.extend(naming(&text, "crate::cmd"));
                hits.extend(naming(&text, "clap::"));
                // `Output` is the renderer's own input: which form to print.
                hits.retain(|h| h != "use crate::cli::Output;");
                assert!(
                    hits.is_empty(),
                    "{} reads the command line: {hits:?}",
                    path.display()
                );
            }
        }
    }
}
