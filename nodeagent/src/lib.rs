//! The Constellation node agent: runs the containers the control plane assigns to this
//! machine on its Docker engine, reports their health, and gossips with other agents.
#![forbid(unsafe_code)]

pub mod agent;
pub mod config;
pub mod docker;
pub mod error;
pub mod gossip;
pub mod reconcile;
pub mod runtime;
pub mod session;
pub mod state_file;

pub use error::{Error, Result};
