//! TODO module image
