//! `ward`: the one binary. Each subcommand lives in its own module under `cmd/`; this file only
//! parses the command line and maps failures to exit codes.

mod client;
mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: TLS connections allocate and free many small buffers
/// across threads, where glibc's allocator showed up at ~10% of the server's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ward",
    version,
    about = "Fleet management server and agent, with a TLS channel you can see and change safely",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the management server (initialising its data dir on first start), or init,
    /// configtest, reload it
    Server(cmd::server::ServerArgs),
    /// TLS policy tools: explain SSLProtocol lines, edit conf files, scan listeners, see what
    /// the listeners negotiated
    #[command(subcommand)]
    Tls(cmd::tls::TlsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => cmd::server::run(args),
        Command::Tls(command) => cmd::tls::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ward: error: {error}");
            ExitCode::from(1)
        }
    }
}
