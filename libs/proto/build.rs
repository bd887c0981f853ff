fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [proto_dir.join("meta.proto"), proto_dir.join("bookie.proto")];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&files, &[proto_dir])?;
    Ok(())
}
