//! The Constellation control plane: replicated state, scheduling, leases and the gRPC
//! services for clients, agents and peers.
#![forbid(unsafe_code)]

pub mod api;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod failover;
pub mod leader;
pub mod raft;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod validate;

pub use error::{Error, FieldViolation, FieldViolations, Result};
