//! placeholder
mod net;
pub mod state;
mod tls;
