//! Compiles `constellation/v1/*.proto` with protox (pure Rust, no system protoc), then
//! generates prost messages, tonic clients and servers, and pbjson serde impls.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let dir = "constellation/v1";
    let mut files: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| format!("{dir}/{}", e.file_name().to_string_lossy())))
        .collect::<Result<_, _>>()?;
    files.retain(|f| f.ends_with(".proto"));
    files.sort();
    println!("cargo:rerun-if-changed={dir}");

    let fds = protox::compile(&files, ["."])?;
    let descriptor = fds.encode_to_vec();
    std::fs::write(out.join("constellation_descriptor.bin"), &descriptor)?;

    tonic_prost_build::configure()
        // Sorted maps: encodings and JSON renderings are identical for identical state.
        .btree_map(".")
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor)?
        .btree_map(["."])
        .preserve_proto_field_names()
        .build(&[".constellation.v1"])?;
    Ok(())
}
