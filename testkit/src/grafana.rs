//! Fake Grafana HTTP API (filled in by the central Grafana work).
