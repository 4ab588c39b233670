//! `constellation`: the operator's command line. Everything it does goes through the
//! control plane's gRPC API; each subcommand lives in `cmd/` and is a thin edge:
//! parse, call, print.

mod cmd;
mod connect;
mod output;
mod progress;
mod report;
mod service_file;
mod snapshot_file;

use clap::Parser;

/// Operate a Constellation cluster.
#[derive(Debug, Parser)]
#[command(name = "constellation", version)]
struct Cli {
    #[command(flatten)]
    global: connect::Global,
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", report::render(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(cli: &Cli) -> anyhow::Result<()> {
    cmd::run(&cli.global, &cli.command).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn arguments_parse_as_documented() {
        let cli = Cli::try_parse_from([
            "constellation",
            "node",
            "drain",
            "n1",
            "--deadline",
            "90m",
            "--batch-size",
            "2",
            "-o",
            "json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            cmd::Command::Node(cmd::node::Command::Drain { deadline: Some(d), batch_size: Some(2), .. })
                if d.as_secs() == 5400
        ));
        assert!(
            Cli::try_parse_from(["constellation", "events", "--topic", "node,service"]).is_ok()
        );
        assert!(Cli::try_parse_from(["constellation", "events", "--topic", "nodes"]).is_err());
        assert!(
            Cli::try_parse_from(["constellation", "lease", "acquire", "l", "--holder", "h"])
                .is_err()
        );
    }
}
