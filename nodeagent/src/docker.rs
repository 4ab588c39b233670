//! The connection to the local Docker engine.

use crate::Result;
use bollard::Docker;

/// Seconds a single Docker API request may take before it fails.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Connects to `host` (unix:// or tcp://), or to DOCKER_HOST / the local socket when
/// `None`, and settles on the highest API version both sides speak (Debian's engine
/// speaks an older API than bollard's default).
pub async fn connect(host: Option<&str>) -> Result<Docker> {
    let docker = match host {
        None => Docker::connect_with_local_defaults()?,
        Some(h) if h.starts_with("unix://") || h.starts_with('/') => Docker::connect_with_unix(
            h.trim_start_matches("unix://"),
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )?,
        Some(h) => {
            Docker::connect_with_http(h, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)?
        }
    };
    Ok(docker.negotiate_version().await?)
}

/// The engine's version string, e.g. "26.1.5".
pub async fn version(docker: &Docker) -> Result<String> {
    let v = docker.version().await?;
    Ok(v.version.unwrap_or_default())
}
