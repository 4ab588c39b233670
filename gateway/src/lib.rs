//! The Constellation gateway: translates the gRPC API into REST, WebSocket events and
//! the Traefik HTTP provider. It holds no state that is not derived from the control plane.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod traefik;
pub mod upstream;
pub mod view;
pub mod ws;

pub use error::{Error, Result};

/// Now, as an RFC 3339 UTC timestamp with second precision.
pub fn rfc3339_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
