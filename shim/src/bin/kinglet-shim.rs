//! `kinglet-shim shim run|exec …`: the per-container monitor and the exec helper as a binary
//! of their own, so each shim maps libcontainer and little else instead of the whole daemon.
//! The command line is the daemon's hidden `kinglet shim …` one (recovery and `kinglet reset`
//! recognise both).

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "kinglet-shim",
    about = "Kinglet's per-container monitor (started by the daemon)"
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, clap::Subcommand)]
enum Top {
    Shim {
        #[command(subcommand)]
        command: kinglet_shim::cli::ShimCommand,
    },
}

fn main() -> std::process::ExitCode {
    let Top::Shim { command } = Cli::parse().command;
    kinglet_shim::cli::init_logging();
    let code = kinglet_shim::cli::main(command);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
