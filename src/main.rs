//! The `cairn` binary: parse, run, map the outcome to one exit code.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let json = cli.json;
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let code = err
                .downcast_ref::<cairn::error::Error>()
                .map_or(cli::exit::FAILED, cli::exit::for_error);
            eprintln!("error: {err:#}");
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "error": format!("{err:#}"), "exit_code": code })
                );
            }
            code
        }
    };
    // Every store is dropped by now; close their connections before leaving.
    cairn::store::shutdown();
    std::process::exit(code);
}
