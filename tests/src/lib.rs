//! Helpers for the end-to-end tests: locating binaries, building OCI layouts, running agents.
