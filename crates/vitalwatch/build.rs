//! Release builds embed the dashboard's assets (`web/dist`, rust-embed).
//!
//! When they are missing (a clean clone: `cargo install --path crates/vitalwatch --locked`),
//! a release build makes them first with `scripts/build-web` (npm ci from the lock file, then
//! esbuild); without npm it warns and the binary serves a "dashboard not built" page. Cargo
//! tracks the embedded files but not a folder that appears later, hence the rerun lines.
//! Debug builds read the assets from disk at run time and need nothing here.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    let dist = Path::new("../../web/dist");
    if !dist.is_dir() {
        build_web();
    }
    if dist.is_dir() {
        println!("cargo:rerun-if-changed=../../web/dist");
    } else {
        // Its parent changes when the folder is created.
        println!("cargo:rerun-if-changed=../../web");
    }
}

fn build_web() {
    let script = Path::new("../../scripts/build-web");
    if !script.exists() {
        println!(
            "cargo:warning=web/dist is missing and so is scripts/build-web: the dashboard will not be embedded"
        );
        return;
    }
    match Command::new("bash").arg(script).status() {
        Ok(status) if status.success() => {}
        Ok(status) => println!(
            "cargo:warning=scripts/build-web failed ({status}): the dashboard will not be embedded; install Node.js and npm, run scripts/build-web, then build again"
        ),
        Err(err) => println!(
            "cargo:warning=could not run scripts/build-web ({err}): the dashboard will not be embedded"
        ),
    }
}
