//! `vitalwatch config default|show`: the shipped defaults, and the configuration in force.

use super::StoreArgs;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the default configuration as commented TOML.
    Default,
    /// Print the configuration in force after defaults, file, environment and flags.
    Show {
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Default => print!("{}", crate::config::DEFAULT_TOML),
        ConfigCommand::Show { store } => {
            let config = store.config()?;
            print!("{}", toml::to_string_pretty(&config)?);
        }
    }
    Ok(())
}
