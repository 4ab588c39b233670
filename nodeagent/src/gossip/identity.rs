//! Who a gossip member is ([`NodeIdentity`]: node name, socket address, generation) and
//! the codec that puts identities and foca's messages on the wire (postcard, with every
//! decoded identity checked against the name bound).

use super::config::MAX_NAME_LEN;
use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member, PostcardCodec};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// One incarnation of a node in the gossip cluster.
///
/// foca keys members by `addr` (the socket others send to), so a member can announce to
/// a seed knowing only its address. `generation` orders identities sharing an address:
/// a restarted agent starts from the wall clock in milliseconds, so it beats the
/// identity of its previous run, and [`foca::Identity::renew`] adds one when the
/// cluster declared this member down, so it rejoins at once under a fresh identity.
/// The clock is only a starting point: nothing compares generations across nodes.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub name: String,
    pub addr: SocketAddr,
    pub generation: u64,
}

impl NodeIdentity {
    /// The identity of a freshly started member.
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        Self {
            name: name.into(),
            addr,
            generation: now_ms.max(1),
        }
    }

    /// What a seed is known as before it answers: only its address. foca accepts an
    /// announce addressed to any identity with the receiver's address.
    pub(crate) fn seed(addr: SocketAddr) -> Self {
        Self {
            name: String::new(),
            addr,
            generation: 0,
        }
    }

    fn is_within_bounds(&self) -> bool {
        self.name.len() <= MAX_NAME_LEN
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.generation)
    }
}

impl fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            name: self.name.clone(),
            addr: self.addr,
            generation: self.generation.wrapping_add(1).max(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// Why a datagram's foca part was refused.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{0}")]
    Postcard(#[from] postcard::Error),
    #[error("identity name longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
}

/// postcard for foca's headers and member updates, refusing identities over the name
/// bound (a datagram is at most 1400 bytes anyway; this keeps junk out of the member
/// table).
#[derive(Debug, Clone, Copy, Default)]
pub struct GossipCodec;

impl Codec<NodeIdentity> for GossipCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<NodeIdentity>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Ok(PostcardCodec.encode_header(header, buf)?)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<NodeIdentity>, CodecError> {
        let header: Header<NodeIdentity> = PostcardCodec.decode_header(buf)?;
        if !header.src.is_within_bounds() || !header.dst.is_within_bounds() {
            return Err(CodecError::NameTooLong);
        }
        let named = match &header.message {
            foca::Message::PingReq { target, .. } | foca::Message::IndirectAck { target, .. } => {
                Some(target)
            }
            foca::Message::IndirectPing { origin, .. }
            | foca::Message::ForwardedAck { origin, .. } => Some(origin),
            _ => None,
        };
        if named.is_some_and(|id| !id.is_within_bounds()) {
            return Err(CodecError::NameTooLong);
        }
        Ok(header)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeIdentity>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Ok(PostcardCodec.encode_member(member, buf)?)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<NodeIdentity>, CodecError> {
        let member: Member<NodeIdentity> = PostcardCodec.decode_member(buf)?;
        if !member.id().is_within_bounds() {
            return Err(CodecError::NameTooLong);
        }
        Ok(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn renewed_identity_wins_over_the_old_one() {
        let a = NodeIdentity::new("n1", "127.0.0.1:7946".parse().unwrap());
        let b = a.renew().unwrap();
        assert_eq!(a.addr(), b.addr());
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
    }

    #[test]
    fn long_names_are_refused_on_decode() {
        let id = NodeIdentity {
            name: "x".repeat(MAX_NAME_LEN + 1),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 1,
        };
        let mut buf = Vec::new();
        GossipCodec
            .encode_member(&Member::alive(id), &mut buf)
            .unwrap();
        assert!(matches!(
            GossipCodec.decode_member(&buf[..]),
            Err(CodecError::NameTooLong)
        ));
    }
}
