//! The values stack of a release: which values files, in helm's order. One function for
//! `plan` (every member of a fleet file) and bootstrap (one cluster, its fixes detected), so
//! what `plan` renders is what bootstrap installs for the same choices.

use crate::topology::{Role, Wiring};
use crate::values::{Overlay, CENTRAL_CONTENT, CENTRAL_MONITOR, EACH_CLUSTER};

/// The base file (embedded unless the user gave their own; for the central role the monitor
/// file, then the content file verbatim), the topology's files, then each overlay (clusters).
pub fn stack(
    role: Role,
    user_values: Option<Vec<(String, String)>>,
    central_values: Option<String>,
    wiring: &Wiring,
    overlays: &[Overlay],
) -> Vec<(String, String)> {
    let own_files = user_values.is_some();
    let mut out = match (user_values, role) {
        (Some(files), _) => files,
        (None, Role::Cluster) => vec![(EACH_CLUSTER.name.to_owned(), EACH_CLUSTER.text.to_owned())],
        // The content file follows verbatim (never through envsubst); a user's own central
        // files replace both.
        (None, Role::Central) => vec![
            (
                CENTRAL_MONITOR.name.to_owned(),
                central_values.unwrap_or_else(|| CENTRAL_MONITOR.text.to_owned()),
            ),
            (
                CENTRAL_CONTENT.name.to_owned(),
                CENTRAL_CONTENT.text.to_owned(),
            ),
        ],
    };
    match role {
        Role::Cluster => out.extend(
            wiring
                .cluster_files()
                .into_iter()
                .map(|(n, t)| (n.to_owned(), t)),
        ),
        // Before the content file, as the overlays' headers show the plain-helm command.
        Role::Central => {
            if let Some(f) = wiring.central_file() {
                // A user's own central files: on top of them, as fixes go on a cluster's.
                let at = if own_files { out.len() } else { 1 };
                out.insert(at, (f.name.to_owned(), f.text.to_owned()));
            }
        }
    }
    if role == Role::Cluster {
        for o in overlays {
            let file = o.file();
            out.push((file.name.to_owned(), file.text.to_owned()));
        }
    }
    out
}
