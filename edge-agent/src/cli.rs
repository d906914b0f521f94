//! TODO module cli
