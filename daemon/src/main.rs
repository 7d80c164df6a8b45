//! The `forgewatch` binary: everything lives in the library ([`forgewatch::cli`]).

fn main() -> std::process::ExitCode {
    forgewatch::cli::main()
}
