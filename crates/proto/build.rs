//! Compiles Istio's protos with protox (pure Rust; no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/ca.proto", "proto/nds.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Ordered, so that an encoded name table is the same bytes every time (its version is
        // a hash of them).
        .btree_map(".istio.networking.nds.v1.NameTable.table")
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
