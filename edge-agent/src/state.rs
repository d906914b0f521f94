//! TODO module state
