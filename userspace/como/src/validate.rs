//! `como validate [-c FILE]`: checks a configuration file (syntax, unknown fields, durations,
//! sizes, module kinds and args, filters) and prints `ok`, or `FILE:LINE:COL: message` on stderr
//! with exit status 2. Without `-c` it checks the embedded default configuration.

use std::path::PathBuf;

use como_config::Config;

use crate::Failure;

/// Arguments of `como validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// Configuration file (TOML); without it the embedded default configuration.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Runs `como validate`.
pub(crate) fn run(args: &ValidateArgs) -> Result<(), Failure> {
    let result = match &args.config {
        Some(p) => Config::load(p),
        None => Config::default_config(),
    };
    match result {
        Ok(_) => {
            println!("ok");
            Ok(())
        }
        Err(e) => {
            // `FILE:LINE:COL: message` at the start of the line, as compilers print it.
            eprintln!("{e}");
            Err(Failure::Reported(crate::EXIT_FILTER))
        }
    }
}
