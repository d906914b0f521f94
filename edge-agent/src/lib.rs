//! The Drover edge agent as a library: the binary in `main.rs` is a thin CLI over it.
//!
//! Pure decisions live in `reconcile`; every module that touches the OS (containers,
//! cgroups, files, images) sits behind a small interface beside it.

pub mod cgroups;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod fsutil;
pub mod host;
pub mod hub_link;
pub mod image;
pub mod join;
pub mod preflight;
pub mod reconcile;
pub mod runtime;
pub mod shim;
pub mod state;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;
