//! `citywatch`: the one binary. `run` is the service; `demo` runs it with a simulated
//! district; `simulate` drives any broker with a simulated city; `replay` feeds a recording
//! through the same dataflow without a broker and prints the final counters; `rules` checks,
//! tests and backtests rule files.

#![forbid(unsafe_code)]

/// Chosen by measurement (docs/dependencies.md): the rule path allocates per event, and
/// glibc's malloc took 12 % of its samples. The `system-alloc` feature leaves the system's,
/// for heap profilers that hook it (heaptrack).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod accounting;
mod bench;
mod checkpoints;
mod demo;
mod explain_cmd;
mod input;
mod logging;
mod plot;
mod replay;
mod rules_cmd;
mod run;
mod settings;
mod simulate;
mod wiring;

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
    /// `run` with a simulated district publishing to it: counters move and alerts fire within
    /// seconds. Uses examples/reference and rules/default unless told otherwise.
    Demo {
        #[command(flatten)]
        args: settings::RunArgs,
        /// Seed of the simulated district.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seconds between injected incidents.
        #[arg(long, default_value_t = 8)]
        incident_every: u64,
    },
    /// Drive a broker (or write a recording) with a simulated city: devices, incidents with
    /// their ground truth, bad input and late delivery.
    Simulate(simulate::SimulateArgs),
    /// Measure end to end: a simulated city published into a citywatch child process;
    /// throughput, latency, accuracy against the ground truth; writes OUT/report.json.
    Bench(bench::BenchArgs),
    /// API tokens (stored hashed in DATA_DIR/tokens.json).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Check and test rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Feed a recording (JSON Lines) through the dataflow and print the final counters.
    Replay {
        /// The recording.
        file: PathBuf,
        #[command(flatten)]
        args: settings::RunArgs,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create (or replace) a token and print it; it is shown only this once.
    Create {
        /// Who holds it: recorded as the actor of what it does.
        #[arg(long)]
        name: String,
        /// viewer, operator, admin or unit:<maintenance unit id>.
        #[arg(long)]
        role: String,
        /// citywatch's data directory.
        #[arg(long, env = "CITYWATCH_DATA_DIR", default_value = "./citywatch-data")]
        data_dir: PathBuf,
    },
    /// List the tokens: name, role, when created (tab-separated).
    List {
        /// citywatch's data directory.
        #[arg(long, env = "CITYWATCH_DATA_DIR", default_value = "./citywatch-data")]
        data_dir: PathBuf,
    },
    /// Revoke a token at once.
    Revoke {
        /// The token's name.
        #[arg(long)]
        name: String,
        /// citywatch's data directory.
        #[arg(long, env = "CITYWATCH_DATA_DIR", default_value = "./citywatch-data")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Validate a rule directory: every problem as file:line:column.
    Check {
        /// The rule directory.
        dir: PathBuf,
    },
    /// Run rule test files (a directory means every *.test.toml under it).
    Test {
        /// Test files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The rules to test [default: the parent of each file's tests/ directory].
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Run a rule set over a recording and print the alerts it raises (times from the
    /// recording's first message); with --against, the difference from another rule set.
    Backtest {
        /// The rule set.
        #[arg(long)]
        rules: PathBuf,
        /// The recording (JSON Lines).
        #[arg(long)]
        input: PathBuf,
        /// Another rule set to compare with.
        #[arg(long)]
        against: Option<PathBuf>,
        /// Reference data directory.
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Under each alert, the event it fired on, its expressions part by part (without
        /// --against).
        #[arg(long, conflicts_with = "against")]
        explain: bool,
    },
    /// Show what a rule's expressions come to for one event: each sub-expression with its
    /// value, the parts an operator decided without, where an evaluation fails.
    Explain {
        /// The rule set.
        #[arg(long)]
        rules: PathBuf,
        /// The rule's id.
        #[arg(long)]
        rule: String,
        /// The event: a line of a recording (`{"topic": …, "payload": …}`).
        #[arg(long)]
        event: String,
        /// The group's previous event (for rules that read `prev`), as a recording line.
        #[arg(long)]
        prev: Option<String>,
        /// Reference data directory.
        #[arg(long)]
        reference: Option<PathBuf>,
    },
}

/// The CEL parser's grammar panics on some texts it cannot take (`!-x`). That parse runs on
/// its own thread and the text is refused with its position, so such a panic is a debug line
/// of the log, not a crash report on stderr; every other panic is reported as before.
fn quiet_parser_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(rules::expr::PARSER_THREAD) {
            tracing::debug!(panic = %info, "the CEL parser gave up on an expression");
        } else {
            report(info);
        }
    }));
}

/// Runs a `citywatch rules` command; whether it found everything in order.
fn rules(command: RulesCommand) -> anyhow::Result<bool> {
    Ok(match command {
        RulesCommand::Check { dir } => rules_cmd::check(&dir)?,
        RulesCommand::Test { paths, rules } => rules_cmd::test(&paths, rules.as_deref())?,
        RulesCommand::Backtest {
            rules,
            input,
            against,
            reference,
            explain,
        } => rules_cmd::backtest(
            &rules,
            &input,
            against.as_deref(),
            reference.as_deref(),
            explain,
        )?,
        RulesCommand::Explain {
            rules,
            rule,
            event,
            prev,
            reference,
        } => explain_cmd::explain(&rules, &rule, &event, prev.as_deref(), reference.as_deref())?,
    })
}

fn main() -> anyhow::Result<()> {
    quiet_parser_panics();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let settings = settings::Settings::load(&args)?;
            logging::init(settings.log_format);
            run::run(settings, None)
        }
        Command::Demo {
            mut args,
            seed,
            incident_every,
        } => {
            for (slot, default) in [
                (&mut args.reference, "examples/reference"),
                (&mut args.rules, "rules/default"),
            ] {
                if slot.is_none() && std::path::Path::new(default).is_dir() {
                    *slot = Some(default.into());
                }
            }
            let settings = settings::Settings::load(&args)?;
            logging::init(settings.log_format);
            run::run(
                settings,
                Some(run::Demo {
                    seed,
                    incident_every,
                }),
            )
        }
        Command::Rules { command } => {
            let ok = rules(command)?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Simulate(args) => {
            logging::init(logging::LogFormat::Text);
            block_on(simulate::run(args))
        }
        Command::Token {
            command: TokenCommand::List { data_dir },
        } => {
            let rows = api::auth::Auth::new(api::auth::AuthMode::Writes, &data_dir)
                .list()
                .map_err(anyhow::Error::msg)?;
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for r in rows {
                writeln!(out, "{}\t{}\t{}", r.name, r.role, r.created_ms)?;
            }
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Revoke { name, data_dir },
        } => {
            let revoked = api::auth::Auth::new(api::auth::AuthMode::Writes, &data_dir)
                .revoke(&name)
                .map_err(anyhow::Error::msg)?;
            anyhow::ensure!(revoked, "no token named {name:?}");
            Ok(())
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    name,
                    role,
                    data_dir,
                },
        } => {
            let role = api::auth::Role::parse(&role).map_err(anyhow::Error::msg)?;
            let token = api::auth::Auth::new(api::auth::AuthMode::Writes, &data_dir)
                .create(&name, &role)
                .map_err(anyhow::Error::msg)?;
            use std::io::Write;
            writeln!(std::io::stdout().lock(), "{token}")?;
            Ok(())
        }
        Command::Bench(args) => {
            logging::init(logging::LogFormat::Text);
            block_on(bench::run(args))
        }
        Command::Replay { file, args } => {
            let settings = settings::Settings::load(&args)?;
            logging::init(settings.log_format);
            replay::replay(&file, settings)
        }
    }
}

/// Runs a command's future on a multi-threaded runtime.
fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}
