//! The `nutmeg` binary: one program for the whole exchange (`serve`, `demo`, `import`).

/// mimalloc instead of the system allocator: building and serializing JSON values allocates a great
/// deal, and glibc's malloc took a quarter of the CPU of a search load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    server::cli::main()
}
