//! The `constellation.v1` protocol, generated from `proto/constellation/v1/*.proto`:
//! messages, tonic clients and servers, and serde impls that follow the proto3 JSON
//! mapping (field names kept as written in the .proto files, enums by name).
#![forbid(unsafe_code)]

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("constellation.v1");
    include!(concat!(env!("OUT_DIR"), "/constellation.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of every .proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/constellation_descriptor.bin"));

#[cfg(feature = "process")]
pub mod process;
