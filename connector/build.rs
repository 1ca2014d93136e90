//! Build script: records the git commit the binary is built from, for `kis_build_info` and
//! `/status`. `KIS_GIT_SHA` in the environment wins (container builds without `.git`);
//! outside a git checkout the value is `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=KIS_GIT_SHA");
    let sha = std::env::var("KIS_GIT_SHA")
        .ok()
        .filter(|sha| !sha.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    // Rebuild when HEAD moves: a checkout changes HEAD, a commit changes the branch's ref.
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
    }
    if let (Some(common_dir), Some(reference)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        println!("cargo:rerun-if-changed={common_dir}/{reference}");
        println!("cargo:rerun-if-changed={common_dir}/packed-refs");
    }
    println!("cargo:rustc-env=KIS_GIT_SHA={sha}");
}
