//! TODO module cgroups
