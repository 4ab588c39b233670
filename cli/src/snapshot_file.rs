//! The file `constellation snapshot save` writes and `snapshot restore` reads: the
//! SaveSnapshot stream as it arrived, framed so that it reads back in one sequential
//! pass and any damage is found before a byte goes to the server.
//!
//! ```text
//! "CONSTELLATION-SNAPSHOT v1\n"        magic line, 26 bytes
//! record: SnapshotChunk{header}        the server's SnapshotHeader
//! record: SnapshotChunk{data}  ...     the gzip payload exactly as sent, ≤ 1 MiB a record
//! record: SnapshotChunk{trailer}       the server's SnapshotTrailer (sha256, total_bytes)
//! 32 bytes                             SHA-256 of every byte above, magic included
//! ```
//!
//! A record is a protobuf varint length followed by that many bytes of an encoded
//! `SnapshotChunk` (prost's length-delimited encoding). Data is framed in records
//! because its length is only known once the stream ends. The trailer's checksum covers
//! the payload end to end (the server computed it); the final digest covers the file,
//! header included, so a flipped bit anywhere is caught.

use constellation_proto::v1::{
    SnapshotChunk, SnapshotHeader, SnapshotTrailer, snapshot_chunk::Part,
};
use prost::Message;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

pub const MAGIC: &[u8] = b"CONSTELLATION-SNAPSHOT v1\n";
/// The part of the magic line before the version, to tell "newer format" from "not ours".
const MAGIC_STEM: &[u8] = b"CONSTELLATION-SNAPSHOT v";
/// Largest data chunk per record, and per message on the RestoreSnapshot stream.
pub const MAX_DATA_CHUNK: usize = 1 << 20;
/// Largest record accepted: a full data chunk plus its framing. Bounds the memory a
/// corrupt length prefix can ask for.
const MAX_RECORD: usize = MAX_DATA_CHUNK + 64;
const DIGEST_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("not a Constellation snapshot file (no {:?} line at the start)", String::from_utf8_lossy(&MAGIC[..MAGIC.len() - 1]))]
    NotSnapshot,
    #[error("snapshot file format {0:?} is not supported by this constellation (it reads v1)")]
    UnsupportedVersion(String),
    #[error("the file is truncated: it ends {0}")]
    Truncated(&'static str),
    #[error("the file is corrupt: {0}")]
    Corrupt(String),
    /// The server's stream broke the header, data, trailer order (writing only).
    #[error("the server sent an invalid snapshot stream: {0}")]
    Stream(String),
}

/// What a complete snapshot holds, apart from its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub header: SnapshotHeader,
    pub trailer: SnapshotTrailer,
    /// Size of the file in bytes.
    pub file_bytes: u64,
}

impl Summary {
    pub fn sha256_hex(&self) -> String {
        hex(&self.trailer.sha256)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Header,
    Data,
    Done,
}

/// Writes a snapshot file from the parts of a SaveSnapshot stream, checking their order
/// and the payload's checksum and size against the trailer.
pub struct Writer<W: Write> {
    out: W,
    file_sha: Sha256,
    data_sha: Sha256,
    data_bytes: u64,
    file_bytes: u64,
    header: Option<SnapshotHeader>,
    trailer: Option<SnapshotTrailer>,
    stage: Stage,
}

impl<W: Write> Writer<W> {
    /// Starts the file: writes the magic line.
    pub fn new(out: W) -> Result<Self, Error> {
        let mut writer = Writer {
            out,
            file_sha: Sha256::new(),
            data_sha: Sha256::new(),
            data_bytes: 0,
            file_bytes: 0,
            header: None,
            trailer: None,
            stage: Stage::Header,
        };
        writer.write_hashed(MAGIC)?;
        Ok(writer)
    }

    /// Payload bytes received so far.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// Adds the next part of the stream.
    pub fn push(&mut self, part: Part) -> Result<(), Error> {
        match (self.stage, part) {
            (Stage::Header, Part::Header(header)) => {
                self.write_record(Part::Header(header.clone()))?;
                self.header = Some(header);
                self.stage = Stage::Data;
            }
            (Stage::Data, Part::Data(data)) => {
                self.data_sha.update(&data);
                self.data_bytes += data.len() as u64;
                for chunk in data.chunks(MAX_DATA_CHUNK) {
                    self.write_record(Part::Data(chunk.to_vec()))?;
                }
            }
            (Stage::Data, Part::Trailer(trailer)) => {
                check_payload(&trailer, self.data_bytes, self.data_sha.clone())
                    .map_err(Error::Stream)?;
                self.write_record(Part::Trailer(trailer.clone()))?;
                self.trailer = Some(trailer);
                self.stage = Stage::Done;
            }
            (Stage::Header, other) => {
                return Err(Error::Stream(format!(
                    "it began with {} instead of the header",
                    part_name(&other)
                )));
            }
            (Stage::Data, Part::Header(_)) => {
                return Err(Error::Stream("a second header".to_owned()));
            }
            (Stage::Done, other) => {
                return Err(Error::Stream(format!(
                    "{} after the trailer",
                    part_name(&other)
                )));
            }
        }
        Ok(())
    }

    /// Ends the file with its digest. Fails unless the trailer was pushed.
    pub fn finish(mut self) -> Result<(W, Summary), Error> {
        let (Some(header), Some(trailer)) = (self.header.take(), self.trailer.take()) else {
            return Err(Error::Stream(match self.stage {
                Stage::Header => "it ended before the header".to_owned(),
                _ => format!(
                    "it ended after {} bytes of data, without the trailer",
                    self.data_bytes
                ),
            }));
        };
        let digest = self.file_sha.clone().finalize();
        self.out.write_all(&digest)?;
        self.out.flush()?;
        let summary = Summary {
            header,
            trailer,
            file_bytes: self.file_bytes + DIGEST_LEN as u64,
        };
        Ok((self.out, summary))
    }

    fn write_record(&mut self, part: Part) -> Result<(), Error> {
        let bytes = SnapshotChunk { part: Some(part) }.encode_length_delimited_to_vec();
        self.write_hashed(&bytes)
    }

    fn write_hashed(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out.write_all(bytes)?;
        self.file_sha.update(bytes);
        self.file_bytes += bytes.len() as u64;
        Ok(())
    }
}

/// Reads a snapshot file back as the parts of a RestoreSnapshot stream. The trailer is
/// returned only once the whole file has been checked (payload checksum and size, file
/// digest, nothing after it), so a caller that forwards parts as they come never sends
/// a trailer for a damaged file.
pub struct Reader<R: Read> {
    input: R,
    file_sha: Sha256,
    data_sha: Sha256,
    data_bytes: u64,
    file_bytes: u64,
    header: Option<SnapshotHeader>,
    trailer: Option<SnapshotTrailer>,
    stage: Stage,
}

impl<R: Read> Reader<R> {
    /// Checks the magic line.
    pub fn new(mut input: R) -> Result<Self, Error> {
        let mut magic = [0u8; MAGIC.len()];
        let got = read_full(&mut input, &mut magic)?;
        let magic = &magic[..got];
        if magic != MAGIC {
            if got > 0 && MAGIC.starts_with(magic) {
                return Err(Error::Truncated("inside the magic line"));
            }
            if got > MAGIC_STEM.len() && magic.starts_with(MAGIC_STEM) {
                let line = magic.split(|&b| b == b'\n').next().unwrap_or_default();
                let version = String::from_utf8_lossy(&line[MAGIC_STEM.len() - 1..]);
                return Err(Error::UnsupportedVersion(version.into_owned()));
            }
            return Err(Error::NotSnapshot);
        }
        let mut file_sha = Sha256::new();
        file_sha.update(MAGIC);
        Ok(Reader {
            input,
            file_sha,
            data_sha: Sha256::new(),
            data_bytes: 0,
            file_bytes: MAGIC.len() as u64,
            header: None,
            trailer: None,
            stage: Stage::Header,
        })
    }

    /// The next part: the header, then each data chunk (≤ 1 MiB), then the trailer,
    /// then `None`.
    pub fn next_part(&mut self) -> Result<Option<Part>, Error> {
        match self.stage {
            Stage::Done => Ok(None),
            Stage::Header => match self.read_record()? {
                Part::Header(header) => {
                    self.header = Some(header.clone());
                    self.stage = Stage::Data;
                    Ok(Some(Part::Header(header)))
                }
                other => Err(Error::Corrupt(format!(
                    "it starts with {} instead of the header",
                    part_name(&other)
                ))),
            },
            Stage::Data => match self.read_record()? {
                Part::Data(data) => {
                    self.data_sha.update(&data);
                    self.data_bytes += data.len() as u64;
                    Ok(Some(Part::Data(data)))
                }
                Part::Trailer(trailer) => {
                    self.check_end()?;
                    check_payload(&trailer, self.data_bytes, self.data_sha.clone())
                        .map_err(Error::Corrupt)?;
                    self.trailer = Some(trailer.clone());
                    self.stage = Stage::Done;
                    Ok(Some(Part::Trailer(trailer)))
                }
                Part::Header(_) => Err(Error::Corrupt("a second header".to_owned())),
            },
        }
    }

    /// Reads to the end, checking everything; what restore does before connecting.
    pub fn verify(mut self) -> Result<Summary, Error> {
        while self.next_part()?.is_some() {}
        Ok(self
            .summary()
            .expect("a fully read file has a header and trailer"))
    }

    /// Once the trailer has been returned: what the file holds.
    pub fn summary(&self) -> Option<Summary> {
        Some(Summary {
            header: self.header.clone()?,
            trailer: self.trailer.clone()?,
            file_bytes: self.file_bytes,
        })
    }

    /// After the trailer record: the file digest, then the end of the file.
    fn check_end(&mut self) -> Result<(), Error> {
        let mut digest = [0u8; DIGEST_LEN];
        if read_full(&mut self.input, &mut digest)? < DIGEST_LEN {
            return Err(Error::Truncated("inside the final digest"));
        }
        self.file_bytes += DIGEST_LEN as u64;
        if digest[..] != self.file_sha.clone().finalize()[..] {
            return Err(Error::Corrupt(
                "its SHA-256 does not match the digest at its end".to_owned(),
            ));
        }
        let mut extra = [0u8; 1];
        if read_full(&mut self.input, &mut extra)? != 0 {
            return Err(Error::Corrupt(
                "there are bytes after the final digest".to_owned(),
            ));
        }
        Ok(())
    }

    fn read_record(&mut self) -> Result<Part, Error> {
        let len = self.read_varint()?;
        if len > MAX_RECORD as u64 {
            return Err(Error::Corrupt(format!(
                "a record claims {len} bytes (at most {MAX_RECORD})"
            )));
        }
        let mut body = vec![0u8; len as usize];
        if read_full(&mut self.input, &mut body)? < body.len() {
            return Err(Error::Truncated("inside a record"));
        }
        self.file_sha.update(&body);
        self.file_bytes += len;
        let chunk = SnapshotChunk::decode(&body[..])
            .map_err(|e| Error::Corrupt(format!("a record does not decode: {e}")))?;
        chunk
            .part
            .ok_or_else(|| Error::Corrupt("an empty record".to_owned()))
    }

    fn read_varint(&mut self) -> Result<u64, Error> {
        let mut value = 0u64;
        for i in 0..10 {
            let mut byte = [0u8; 1];
            if read_full(&mut self.input, &mut byte)? == 0 {
                return Err(Error::Truncated(if i == 0 {
                    "before the trailer"
                } else {
                    "inside a record"
                }));
            }
            self.file_sha.update(byte);
            self.file_bytes += 1;
            value |= u64::from(byte[0] & 0x7f) << (7 * i);
            if byte[0] & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::Corrupt(
            "a record length is not a valid varint".to_owned(),
        ))
    }
}

/// Checks the payload seen against the trailer that describes it.
fn check_payload(trailer: &SnapshotTrailer, bytes: u64, sha: Sha256) -> Result<(), String> {
    if trailer.total_bytes != bytes {
        return Err(format!(
            "the trailer says {} bytes of data, but there were {bytes}",
            trailer.total_bytes
        ));
    }
    let actual = sha.finalize();
    if trailer.sha256[..] != actual[..] {
        return Err(format!(
            "the data's SHA-256 is {}, but the trailer says {}",
            hex(&actual),
            hex(&trailer.sha256)
        ));
    }
    Ok(())
}

fn part_name(part: &Part) -> &'static str {
    match part {
        Part::Header(_) => "a header",
        Part::Data(_) => "data",
        Part::Trailer(_) => "a trailer",
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            format_version: 1,
            last_log_index: 120,
            last_log_term: 3,
            event_index: 97,
            cluster_version: "0.1.0".to_owned(),
        }
    }

    fn trailer_for(data: &[u8]) -> SnapshotTrailer {
        SnapshotTrailer {
            sha256: Sha256::digest(data).to_vec(),
            total_bytes: data.len() as u64,
        }
    }

    /// A payload bigger than one record, so it is split.
    fn payload() -> Vec<u8> {
        (0..MAX_DATA_CHUNK + 1000)
            .map(|i| (i * 7 % 251) as u8)
            .collect()
    }

    /// The stream a server would send: header, the payload in uneven chunks, trailer.
    fn stream(data: &[u8]) -> Vec<Part> {
        let mut parts = vec![Part::Header(header())];
        let (a, b) = data.split_at(data.len() / 3);
        parts.push(Part::Data(a.to_vec()));
        parts.push(Part::Data(b.to_vec()));
        parts.push(Part::Trailer(trailer_for(data)));
        parts
    }

    fn write(parts: Vec<Part>) -> Result<(Vec<u8>, Summary), Error> {
        let mut writer = Writer::new(Vec::new())?;
        for part in parts {
            writer.push(part)?;
        }
        writer.finish()
    }

    fn file(data: &[u8]) -> Vec<u8> {
        write(stream(data)).unwrap().0
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Part>, Error> {
        let mut reader = Reader::new(bytes)?;
        let mut parts = Vec::new();
        while let Some(part) = reader.next_part()? {
            parts.push(part);
        }
        Ok(parts)
    }

    #[test]
    fn round_trip_gives_back_the_stream_in_chunks_of_at_most_one_mib() {
        let data = payload();
        let (bytes, written) = write(stream(&data)).unwrap();
        assert!(bytes.starts_with(MAGIC));
        assert_eq!(written.file_bytes, bytes.len() as u64);

        let parts = read_all(&bytes).unwrap();
        assert_eq!(parts.first(), Some(&Part::Header(header())));
        assert_eq!(parts.last(), Some(&Part::Trailer(trailer_for(&data))));
        let mut back = Vec::new();
        for part in &parts[1..parts.len() - 1] {
            let Part::Data(chunk) = part else {
                panic!("expected data, got {part:?}")
            };
            assert!(chunk.len() <= MAX_DATA_CHUNK);
            back.extend_from_slice(chunk);
        }
        assert_eq!(back, data);

        let read = Reader::new(&bytes[..]).unwrap().verify().unwrap();
        assert_eq!(read, written);
        assert_eq!(read.sha256_hex(), hex(&Sha256::digest(&data)));
    }

    #[test]
    fn empty_payload_round_trips() {
        let bytes = file(&[]);
        let summary = Reader::new(&bytes[..]).unwrap().verify().unwrap();
        assert_eq!(summary.trailer.total_bytes, 0);
    }

    #[test]
    fn any_corrupted_byte_is_detected() {
        let bytes = file(b"a small gzip stream, pretend");
        // Every byte after the magic line (the magic has its own errors): header,
        // data, trailer and the digest itself.
        for i in MAGIC.len()..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let err = Reader::new(&bad[..]).unwrap().verify().unwrap_err();
            assert!(
                matches!(err, Error::Corrupt(_) | Error::Truncated(_)),
                "byte {i}: {err}"
            );
        }
        // And in a large payload, where the flip lands mid-record.
        let mut bad = file(&payload());
        let middle = bad.len() / 2;
        bad[middle] ^= 0x80;
        let err = Reader::new(&bad[..]).unwrap().verify().unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn a_damaged_file_never_yields_its_trailer() {
        let mut bytes = file(b"payload");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff; // the digest
        let mut reader = Reader::new(&bytes[..]).unwrap();
        let err = loop {
            match reader.next_part() {
                Ok(Some(Part::Trailer(_))) => panic!("the trailer of a damaged file"),
                Ok(Some(_)) => {}
                Ok(None) => panic!("a damaged file read to its end"),
                Err(err) => break err,
            }
        };
        assert!(matches!(err, Error::Corrupt(_)), "{err}");
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = file(b"some payload bytes");
        for len in 0..bytes.len() {
            let err = match Reader::new(&bytes[..len]) {
                Ok(reader) => reader.verify().unwrap_err(),
                Err(err) => err,
            };
            let expected = if len == 0 {
                matches!(err, Error::NotSnapshot)
            } else {
                matches!(err, Error::Truncated(_))
            };
            assert!(expected, "cut at {len} of {}: {err}", bytes.len());
        }
    }

    #[test]
    fn bytes_after_the_digest_are_refused() {
        let mut bytes = file(b"payload");
        bytes.push(b'\n');
        let err = Reader::new(&bytes[..]).unwrap().verify().unwrap_err();
        assert!(err.to_string().contains("after the final digest"), "{err}");
    }

    #[test]
    fn wrong_magic_is_refused() {
        let err = Reader::new(&b"\x1f\x8b\x08\x00 a bare gzip stream"[..])
            .err()
            .unwrap();
        assert!(matches!(err, Error::NotSnapshot), "{err}");
        assert!(err.to_string().contains("not a Constellation snapshot"));

        let mut newer = file(b"payload");
        newer[MAGIC.len() - 2] = b'2';
        let err = Reader::new(&newer[..]).err().unwrap();
        assert!(
            matches!(err, Error::UnsupportedVersion(ref v) if v == "v2"),
            "{err}"
        );
    }

    #[test]
    fn a_huge_record_length_is_refused_without_allocating_it() {
        let mut bytes = MAGIC.to_vec();
        prost::encoding::encode_varint(u64::MAX >> 1, &mut bytes);
        let err = Reader::new(&bytes[..]).unwrap().verify().unwrap_err();
        assert!(err.to_string().contains("claims"), "{err}");
    }

    #[test]
    fn the_writer_refuses_a_stream_whose_trailer_disagrees() {
        let data = b"payload".to_vec();
        let mut parts = stream(&data);
        let Some(Part::Trailer(trailer)) = parts.last_mut() else {
            unreachable!()
        };
        trailer.sha256[0] ^= 1;
        let err = write(parts).err().unwrap();
        assert!(err.to_string().contains("SHA-256"), "{err}");

        let mut parts = stream(&data);
        let Some(Part::Trailer(trailer)) = parts.last_mut() else {
            unreachable!()
        };
        trailer.total_bytes += 1;
        let err = write(parts).err().unwrap();
        assert!(err.to_string().contains("bytes of data"), "{err}");
    }

    #[test]
    fn the_writer_refuses_a_stream_out_of_order_or_incomplete() {
        let err = write(vec![Part::Data(vec![1])]).err().unwrap();
        assert!(err.to_string().contains("instead of the header"), "{err}");

        let mut parts = stream(b"x");
        parts.insert(1, Part::Header(header()));
        assert!(write(parts).is_err());

        let mut parts = stream(b"x");
        parts.push(Part::Data(vec![2]));
        assert!(write(parts).is_err());

        let mut parts = stream(b"x");
        parts.pop();
        let err = write(parts).err().unwrap();
        assert!(err.to_string().contains("without the trailer"), "{err}");
    }
}
