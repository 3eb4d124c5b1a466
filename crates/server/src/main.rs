//! The `nutmeg` binary: one program for the whole exchange (`serve`, `demo`, `import`).

fn main() -> std::process::ExitCode {
    server::cli::main()
}
