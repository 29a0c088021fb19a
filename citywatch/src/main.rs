//! `citywatch`: the one binary. `run` is the service; `replay` feeds a recording through the
//! same dataflow without a broker and prints the final counters.

#![forbid(unsafe_code)]

mod logging;
mod replay;
mod run;
mod settings;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "citywatch",
    version,
    about = "Real-time IoT stream processor for a market-supervision control room"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest the device contract over MQTT and serve live counters over HTTP.
    Run(settings::RunArgs),
    /// Feed a recording (JSON Lines) through the dataflow and print the final counters.
    Replay {
        /// The recording.
        file: PathBuf,
        #[command(flatten)]
        args: settings::RunArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let settings = settings::Settings::load(&args)?;
            logging::init(settings.log_format);
            run::run(settings)
        }
        Command::Replay { file, args } => {
            let settings = settings::Settings::load(&args)?;
            logging::init(settings.log_format);
            replay::replay(&file, settings)
        }
    }
}
