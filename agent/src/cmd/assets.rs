//! `cmm-agent generate-assets DIR` (hidden), run when the packages are built (`scripts/dev
//! package`): the man pages (one per command) and the bash, zsh and fish completions, from the
//! same clap definition the binary parses with (its built-in defaults included), and the values
//! files the binary embeds, so /usr/share/cmm/values/ holds exactly the bytes it installs.

use std::path::Path;

use clap_complete::Shell;

use crate::cli::AssetsArgs;
use crate::output::outln;

pub fn run(args: AssetsArgs) -> anyhow::Result<()> {
    let man = args.out.join("man");
    let completions = args.out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", d.display()))?;
    }
    // Each command's page carries the agent's version in its header (`.TH … "cmm-agent-check
    // 0.1.0"`), not the bare command name clap_mangen falls back to without one.
    let cmd = crate::settings::layers::defaults_only().propagate_version(true);
    clap_mangen::generate_to(cmd.clone(), &man)
        .map_err(|e| anyhow::anyhow!("writing the man pages into {}: {e}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut c = cmd.clone();
        clap_complete::generate_to(shell, &mut c, "cmm-agent", &completions).map_err(|e| {
            anyhow::anyhow!(
                "writing the {shell} completion into {}: {e}",
                completions.display()
            )
        })?;
    }
    let values = args.out.join("values");
    let files = [
        cmm_installer::values::EACH_CLUSTER,
        cmm_installer::values::CENTRAL_MONITOR,
        cmm_installer::values::CENTRAL_CONTENT,
    ]
    .into_iter()
    .chain(cmm_installer::values::OVERLAYS);
    for f in files {
        let path = values.join(f.name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, f.text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    outln!(
        "wrote {} man pages, {} completions and the embedded values into {}",
        count(&man)?,
        count(&completions)?,
        args.out.display()
    );
    Ok(())
}

fn count(dir: &Path) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(dir)?.count())
}
