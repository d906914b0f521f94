//! TODO module daemon
