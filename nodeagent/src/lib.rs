//! The Constellation node agent: runs the containers the control plane assigns to this
//! machine on its Docker engine, reports their health, and gossips with other agents.
#![forbid(unsafe_code)]

pub mod config;
pub mod docker;
pub mod error;
pub mod runtime;

pub use error::{Error, Result};
