//! Fake Kubernetes API server (filled in by the bootstrap work).
