//! The envelope around every gossip datagram: magic, format version, kind and cluster
//! tag, checked before anything is decoded so foreign or garbled datagrams cost nothing.
//!
//! ```text
//! 0      2        3      4               8
//! | "CG" | version | kind | cluster tag  | payload (foca message or direct push)
//! ```

/// Bytes of envelope in front of every payload.
pub const ENVELOPE_LEN: usize = 8;
const MAGIC: [u8; 2] = *b"CG";
/// Bumped when the payload format changes incompatibly; older members drop newer
/// datagrams rather than misreading them.
const FORMAT_VERSION: u8 = 1;

/// What the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A foca (SWIM) message.
    Foca,
    /// Broadcast items sent straight to one member (our metadata to a member that just
    /// joined), outside foca's dissemination.
    Push,
    /// The sender's own identity as a foca member update, sent with a push: the new
    /// member learns of the sender at once instead of when the sender's probe first
    /// reaches it.
    Introduce,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Foca => 0,
            Kind::Push => 1,
            Kind::Introduce => 2,
        }
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Too short, wrong magic, unknown version or kind.
    Malformed,
    /// Well-formed but from another cluster.
    Foreign,
}

/// 32-bit FNV-1a of the cluster id: stable across builds and platforms (unlike std's
/// hasher), and enough to tell clusters apart by accident. It is not authentication.
pub fn cluster_tag(cluster: &str) -> u32 {
    cluster.bytes().fold(0x811c_9dc5u32, |hash, b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Writes the envelope for `kind` into the first [`ENVELOPE_LEN`] bytes of `out`.
pub fn write_envelope(out: &mut Vec<u8>, kind: Kind, tag: u32) {
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind.byte());
    out.extend_from_slice(&tag.to_be_bytes());
}

/// Checks the envelope of a received datagram and returns its kind and payload.
pub fn open(datagram: &[u8], tag: u32) -> Result<(Kind, &[u8]), Rejected> {
    if datagram.len() < ENVELOPE_LEN || datagram[..2] != MAGIC || datagram[2] != FORMAT_VERSION {
        return Err(Rejected::Malformed);
    }
    let kind = match datagram[3] {
        0 => Kind::Foca,
        1 => Kind::Push,
        2 => Kind::Introduce,
        _ => return Err(Rejected::Malformed),
    };
    let theirs = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
    if theirs != tag {
        return Err(Rejected::Foreign);
    }
    Ok((kind, &datagram[ENVELOPE_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tags_differ_between_clusters() {
        assert_ne!(cluster_tag("prod"), cluster_tag("staging"));
        assert_eq!(cluster_tag(""), 0x811c_9dc5);
        // FNV-1a test vector.
        assert_eq!(cluster_tag("a"), 0xe40c_292c);
    }

    proptest! {
        #[test]
        fn an_envelope_opens_to_what_was_sealed(payload: Vec<u8>, push: bool, cluster: String) {
            let kind = if push { Kind::Push } else { Kind::Foca };
            let tag = cluster_tag(&cluster);
            let mut out = Vec::new();
            write_envelope(&mut out, kind, tag);
            out.extend_from_slice(&payload);
            prop_assert_eq!(open(&out, tag), Ok((kind, &payload[..])));
            prop_assert_eq!(open(&out, tag ^ 1), Err(Rejected::Foreign));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes: Vec<u8>, tag: u32) {
            let _ = open(&bytes, tag);
        }
    }
}
