//! TODO module shim
