//! The Traefik HTTP provider: the dynamic configuration rendered from `traefik.*`
//! service labels, live allocation health and node addresses, and the routes that
//! serve it (`/traefik` and the predecessor's `/api/dynamic`, `/api/http/routers`, ...).
//!
//! [`render`] is a pure function of the cluster state; the HTTP layer renders once per
//! view change and serves the cached bytes.

pub mod keys;
pub mod labels;
pub mod render;
pub mod serve;

pub use render::{Protocol, RenderError, RenderOptions, Rendered, Renderer, render};
pub use serve::{Provider, Settings, routes};

/// The Traefik major version the document targets: v3 fields break a v2.11 Traefik.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TraefikVersion {
    V2,
    #[default]
    V3,
}

impl TraefikVersion {
    pub fn label(self) -> &'static str {
        match self {
            TraefikVersion::V2 => "v2",
            TraefikVersion::V3 => "v3",
        }
    }
}

impl std::str::FromStr for TraefikVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "v2" | "2" | "v2.11" | "2.11" => Ok(TraefikVersion::V2),
            "v3" | "3" => Ok(TraefikVersion::V3),
            other => Err(format!("{other:?} is not a Traefik version (v2 or v3)")),
        }
    }
}
