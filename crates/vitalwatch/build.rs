//! Rebuilds a release binary when the dashboard's assets change.
//!
//! A release build embeds `web/dist` (rust-embed); cargo tracks the embedded files but not a
//! folder that appears later, so a binary built before `scripts/build-web` would keep its
//! "not built" page forever. Debug builds read the assets from disk at run time and need
//! nothing here.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    let dist = std::path::Path::new("../../web/dist");
    if dist.is_dir() {
        println!("cargo:rerun-if-changed=../../web/dist");
    } else {
        // Its parent changes when the folder is created.
        println!("cargo:rerun-if-changed=../../web");
    }
}
