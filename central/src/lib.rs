//! The central Grafana as CMM sees it (filled in by the central Grafana work).
