fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=cri/api.proto");
    println!("cargo:rerun-if-changed=kinglet/admin.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // RPCs Kinglet does not implement answer Unimplemented without hand-written stubs.
        .generate_default_stubs(true)
        .compile_protos(
            &["cri/api.proto", "kinglet/admin.proto"],
            &["cri", "kinglet"],
        )?;
    Ok(())
}
