//! TODO module runtime
