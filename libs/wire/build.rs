//! Generates the Pulsar protocol types from `proto/pulsar_api.proto` with prost.
//! `protoc` must be on PATH (`make setup` installs it).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = proto_dir.join("pulsar_api.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    prost_build::Config::new().compile_protos(&[file], &[proto_dir])?;
    Ok(())
}
