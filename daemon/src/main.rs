//! The `kinglet` binary: parse the command line, run the verb, print the error chain once.

fn main() -> std::process::ExitCode {
    kinglet::cli::main()
}
