//! The node agent's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent's own configuration is wrong (flags, environment, config file).
    #[error("{0}")]
    Config(String),
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A task of the agent failed.
    #[error("{0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<constellation_proto::process::ConfigError> for Error {
    fn from(e: constellation_proto::process::ConfigError) -> Self {
        Error::Config(e.to_string())
    }
}
