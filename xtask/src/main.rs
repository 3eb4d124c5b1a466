//! Project tasks that need files outside the repository; the build itself never runs these.
//!
//! `cargo xtask codegen [--check] [DEFINITIONS_DIR]` reads the FHIR R4 definitions (by default
//! `../shared/data/fhir-r4/definitions`) and writes the tables in `crates/fhir/src/generated/`.
//! With `--check` it writes nothing and fails if the committed tables differ from what it would write.

mod codegen;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("codegen") => {
            let mut check = false;
            let mut dir = None;
            for arg in &args[1..] {
                match arg.as_str() {
                    "--check" => check = true,
                    other if other.starts_with('-') => bail!("unknown flag {other}"),
                    other => dir = Some(PathBuf::from(other)),
                }
            }
            let root = repo_root();
            let dir = dir.unwrap_or_else(|| root.join("../shared/data/fhir-r4/definitions"));
            let out = root.join("crates/fhir/src/generated");
            run_codegen(&dir, &out, check)
        }
        _ => {
            eprintln!("usage: cargo xtask codegen [--check] [DEFINITIONS_DIR]");
            std::process::exit(2);
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run_codegen(dir: &Path, out: &Path, check: bool) -> Result<()> {
    let files = codegen::generate(dir)?;
    let mut stale = Vec::new();
    for (name, text) in &files {
        let path = out.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != *text {
            if check {
                stale.push(name.clone());
            } else {
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "generated tables are out of date ({}); run `cargo xtask codegen`",
            stale.join(", ")
        );
    }
    if check {
        println!("generated tables are up to date");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed tables are what the generator writes from the definitions (the `--check` of CI).
    #[test]
    fn generated_tables_are_up_to_date() {
        let root = repo_root();
        let dir = root.join("../shared/data/fhir-r4/definitions");
        if !dir.is_dir() {
            eprintln!(
                "SKIPPED: {} is missing, so the generated tables cannot be compared with the definitions",
                dir.display()
            );
            return;
        }
        let files = codegen::generate(&dir).expect("generate");
        for (name, text) in &files {
            let committed =
                std::fs::read_to_string(root.join("crates/fhir/src/generated").join(name))
                    .unwrap_or_default();
            assert!(
                committed == *text,
                "crates/fhir/src/generated/{name} is stale: run `cargo xtask codegen`"
            );
        }
    }
}
