//! TODO module preflight
