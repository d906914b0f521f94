//! Secrets and ConfigMaps on the hub: values encrypted at rest (`at_rest`), references
//! resolved into digests at apply and into values only when sealing (`resolve`), and the
//! store rows they travel in (`rows`).
//!
//! Nothing here may log, print or put into an error a Secret's value.

pub mod at_rest;
pub mod resolve;
pub mod routes;
pub mod rows;
#[cfg(test)]
mod tests;
pub mod views;

pub use at_rest::{AtRestError, SecretBox};
pub use resolve::{Missing, Objects, digest_refs, fill_values, references};
pub use rows::{from_row, to_row};
