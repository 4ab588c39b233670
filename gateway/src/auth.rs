//! Authentication at the edge: bearer tokens from the configuration, each with a role
//! (`read` or `admin`), and the rule each route declares ([`Access`]).
//!
//! A token comes in the `Authorization: Bearer <token>` header. Browsers cannot set
//! headers on a WebSocket, so a WebSocket handshake may carry it instead as a
//! subprotocol, the way Kubernetes does: `Sec-WebSocket-Protocol:
//! constellation.v1, base64url.bearer.constellation.<token in unpadded base64url>`
//! (JavaScript: `new WebSocket(url, ["constellation.v1",
//! "base64url.bearer.constellation." + b64url(token)])`). The gateway answers with the
//! `constellation.v1` subprotocol only, never echoing the token. Tokens are not
//! accepted in query strings: URLs end up in logs, browser history and proxies.
//!
//! With no token configured the gateway serves everyone as admin, and it refuses to
//! start that way on an address other than loopback (see [`Tokens::check_listen`]), so
//! an unauthenticated gateway is only ever reachable from its own machine.

use crate::{Error, Result};
use axum::http::{HeaderMap, header};
use std::net::SocketAddr;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Admin,
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (liveness).
    Public,
    /// A `read` or `admin` token.
    Read,
    /// An `admin` token: every route that changes anything.
    Admin,
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, Role)>,
}

/// Shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// The WebSocket subprotocol of the gateway's messages, which a client that sends its
/// token as a subprotocol offers too (a browser needs one offered protocol answered).
pub const WS_PROTOCOL: &str = "constellation.v1";
/// Prefix of the subprotocol that carries a bearer token in a WebSocket handshake.
pub const WS_TOKEN_PREFIX: &str = "base64url.bearer.constellation.";

/// The bearer token of a WebSocket handshake's subprotocols, decoded; `Err` when a
/// token subprotocol is there but is not unpadded base64url of UTF-8.
pub fn subprotocol_token(headers: &HeaderMap) -> Result<Option<String>> {
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return Ok(None);
    }
    let Some(encoded) = offered_protocols(headers).find_map(|p| p.strip_prefix(WS_TOKEN_PREFIX))
    else {
        return Ok(None);
    };
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(Some)
        .ok_or_else(|| {
            Error::Unauthenticated(format!(
                "the {WS_TOKEN_PREFIX}<token> subprotocol must hold the token in unpadded base64url"
            ))
        })
}

/// The subprotocols a WebSocket handshake offers.
pub fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

impl Tokens {
    pub fn new(admin: &[String], read: &[String]) -> Result<Self> {
        let mut entries = Vec::new();
        for (role, list, field) in [
            (Role::Admin, admin, "admin_tokens"),
            (Role::Read, read, "read_tokens"),
        ] {
            for (i, token) in list.iter().enumerate() {
                if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace()) {
                    return Err(Error::Config(format!(
                        "{field}[{i}]: a token needs at least {MIN_TOKEN_LEN} characters and no whitespace"
                    )));
                }
                entries.push((token.clone(), role));
            }
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Without tokens the gateway only listens on loopback.
    pub fn check_listen(&self, listen: SocketAddr) -> Result<()> {
        if self.is_empty() && !listen.ip().is_loopback() {
            return Err(Error::Config(format!(
                "listen {listen}: without admin_tokens or read_tokens the gateway only listens on a loopback address"
            )));
        }
        Ok(())
    }

    /// The role of the bearer token in `headers` (admin for everyone when no token is
    /// configured).
    pub fn role(&self, headers: &HeaderMap) -> Result<Role> {
        if self.is_empty() {
            return Ok(Role::Admin);
        }
        let from_subprotocol;
        let presented = match headers.get(header::AUTHORIZATION) {
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    Error::Unauthenticated(
                        "the Authorization header must be `Bearer <token>`".into(),
                    )
                })?,
            None => {
                from_subprotocol = subprotocol_token(headers)?
                    .ok_or_else(|| Error::Unauthenticated("a bearer token is required".into()))?;
                from_subprotocol.as_str()
            }
        };
        // Compare against every token without stopping early, so timing does not tell
        // how much of a token matched.
        let mut found = None;
        for (token, role) in &self.entries {
            if constant_time_eq(token.as_bytes(), presented.as_bytes()) {
                found = Some(*role);
            }
        }
        found.ok_or_else(|| Error::Unauthenticated("unknown bearer token".into()))
    }

    /// Whether the request may pass a route requiring `access`.
    pub fn authorize(&self, access: Access, headers: &HeaderMap) -> Result<()> {
        match access {
            Access::Public => Ok(()),
            Access::Read => self.role(headers).map(drop),
            Access::Admin => match self.role(headers)? {
                Role::Admin => Ok(()),
                Role::Read => Err(Error::Forbidden(
                    "this route changes the cluster and needs an admin token".into(),
                )),
            },
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            h.insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn roles_gate_routes() {
        let admin = "a".repeat(20);
        let read = "r".repeat(20);
        let tokens =
            Tokens::new(std::slice::from_ref(&admin), std::slice::from_ref(&read)).unwrap();
        assert!(tokens.authorize(Access::Public, &headers(None)).is_ok());
        assert!(matches!(
            tokens.authorize(Access::Read, &headers(None)),
            Err(Error::Unauthenticated(_))
        ));
        assert!(
            tokens
                .authorize(Access::Read, &headers(Some(&read)))
                .is_ok()
        );
        assert!(matches!(
            tokens.authorize(Access::Admin, &headers(Some(&read))),
            Err(Error::Forbidden(_))
        ));
        assert!(
            tokens
                .authorize(Access::Admin, &headers(Some(&admin)))
                .is_ok()
        );
        assert!(matches!(
            tokens.authorize(Access::Admin, &headers(Some("x".repeat(20).as_str()))),
            Err(Error::Unauthenticated(_))
        ));
    }

    #[test]
    fn a_websocket_handshake_may_carry_its_token_as_a_subprotocol() {
        use base64::Engine;
        let read = "r".repeat(20);
        let tokens = Tokens::new(&[], std::slice::from_ref(&read)).unwrap();
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&read);
        let handshake = |protocols: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::UPGRADE, "websocket".parse().unwrap());
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, protocols.parse().unwrap());
            h
        };
        let good = handshake(&format!("{WS_PROTOCOL}, {WS_TOKEN_PREFIX}{encoded}"));
        assert_eq!(tokens.role(&good).unwrap(), Role::Read);
        // Only on a WebSocket handshake.
        let mut plain = good.clone();
        plain.remove(header::UPGRADE);
        assert!(tokens.role(&plain).is_err());
        // Not base64url, or another token.
        assert!(
            tokens
                .role(&handshake(&format!("{WS_TOKEN_PREFIX}{read}=")))
                .is_err()
        );
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("x".repeat(20));
        assert!(
            tokens
                .role(&handshake(&format!("{WS_TOKEN_PREFIX}{other}")))
                .is_err()
        );
        assert!(tokens.role(&handshake(WS_PROTOCOL)).is_err());
    }

    #[test]
    fn no_tokens_means_loopback_only() {
        let none = Tokens::default();
        assert!(none.check_listen("127.0.0.1:80".parse().unwrap()).is_ok());
        assert!(none.check_listen("[::1]:80".parse().unwrap()).is_ok());
        assert!(none.check_listen("0.0.0.0:80".parse().unwrap()).is_err());
        let some = Tokens::new(&["t".repeat(16)], &[]).unwrap();
        assert!(some.check_listen("0.0.0.0:80".parse().unwrap()).is_ok());
    }

    #[test]
    fn short_tokens_are_refused() {
        assert!(Tokens::new(&["short".into()], &[]).is_err());
    }
}
