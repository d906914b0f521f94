//! TODO module reconcile
