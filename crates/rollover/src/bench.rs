use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    Memory,
}

pub fn run(_command: BenchCommand) -> ExitCode {
    ExitCode::SUCCESS
}
