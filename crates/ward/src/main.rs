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

/// OpenSSL allocates with mimalloc too: with glibc's malloc, the buffers of each handshake
/// (ML-KEM's above all) left its per-thread arenas fragmented, and a held push connection
/// cost the server about 74 KiB of memory instead of what it holds.
mod openssl_allocator {
    use std::ffi::{c_char, c_int, c_void};

    /// What OpenSSL holds is counted (by mimalloc's usable size, so free and realloc need no
    /// header): `ward_tls_library_bytes` on /metrics.
    unsafe fn usable(pointer: *const c_void) -> isize {
        if pointer.is_null() {
            0
        } else {
            libmimalloc_sys::mi_usable_size(pointer) as isize
        }
    }

    unsafe extern "C" fn malloc(size: usize, _file: *const c_char, _line: c_int) -> *mut c_void {
        let pointer = libmimalloc_sys::mi_malloc(size);
        ward_tls::ffi::count_allocated(usable(pointer));
        pointer
    }

    unsafe extern "C" fn realloc(
        pointer: *mut c_void,
        size: usize,
        _file: *const c_char,
        _line: c_int,
    ) -> *mut c_void {
        let before = usable(pointer);
        let moved = libmimalloc_sys::mi_realloc(pointer, size);
        if !moved.is_null() || size == 0 {
            ward_tls::ffi::count_allocated(usable(moved) - before);
        }
        moved
    }

    unsafe extern "C" fn free(pointer: *mut c_void, _file: *const c_char, _line: c_int) {
        ward_tls::ffi::count_allocated(-usable(pointer));
        libmimalloc_sys::mi_free(pointer)
    }

    /// Before anything else touches OpenSSL.
    pub fn install() {
        // SAFETY: mimalloc's malloc, realloc and free match and are thread-safe.
        let installed = unsafe {
            ward_tls::ffi::set_allocator(ward_tls::ffi::Allocator {
                malloc,
                realloc,
                free,
            })
        };
        debug_assert!(installed, "OpenSSL allocated before main");
    }
}

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
    /// The managed client: enroll, run, start, stop, status
    #[command(subcommand)]
    Agent(cmd::agent::AgentCommand),
    /// Log in to a remote server's admin API and save the session
    Login(cmd::fleet::LoginArgs),
    /// End the saved session on the server and forget it here
    Logout {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Groups: the tree, settings and inheritance, enrollment tokens
    Group {
        #[command(flatten)]
        target: cmd::fleet::Target,
        #[command(subcommand)]
        command: cmd::fleet::GroupCommand,
    },
    /// Management server lists
    #[command(name = "serverlist")]
    ServerList {
        #[command(flatten)]
        target: cmd::fleet::Target,
        #[command(subcommand)]
        command: cmd::fleet::ServerListCommand,
    },
    /// Agents as the server sees them (the seed's clients): list, show, move between groups,
    /// retire; `ward client` is an alias
    #[command(alias = "client")]
    Agents {
        #[command(flatten)]
        target: cmd::fleet::Target,
        #[command(subcommand)]
        command: cmd::fleet::AgentsCommand,
    },
    /// Admin and auditor accounts
    Account {
        #[command(flatten)]
        target: cmd::fleet::Target,
        #[command(subcommand)]
        command: cmd::fleet::AccountCommand,
    },
    /// Benchmarks that report figures
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Run many simulated agents against a server (real protocol, real TLS): rehearse a
    /// change on a copy of a fleet, or measure the server
    Simulate(cmd::simulate::SimulateArgs),
    /// The audit log of admin changes
    Audit {
        #[command(flatten)]
        target: cmd::fleet::Target,
        #[command(flatten)]
        args: cmd::fleet::AuditArgs,
    },
    /// Tab completion for a shell, on standard output (`ward completions bash >
    /// /usr/share/bash-completion/completions/ward`)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// The manual pages, made from the commands' own definitions: ward(1) and one page per
    /// subcommand, written into a directory
    Man {
        /// Where to write the pages (made if missing)
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
}

/// Whether the command line asks for JSON (before any `--`): errors are JSON then too.
fn wants_json() -> bool {
    std::env::args()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

impl Command {
    /// Whether the command runs a server, an agent or a simulated fleet: processes that write
    /// to sockets, where a peer gone must be an error to handle, never a signal that kills.
    fn serves(&self) -> bool {
        match self {
            Command::Server(args) => args.serves(),
            Command::Agent(command) => command.serves(),
            Command::Simulate(_) | Command::Bench(_) => true,
            _ => false,
        }
    }
}

/// A command that only prints ends quietly when its reader goes away (`ward agents list |
/// head -1`), as Unix tools do, instead of panicking on the closed pipe: SIGPIPE back to its
/// default (Rust ignores it, so every print would fail with an error instead).
fn output_ends_quietly() {
    // SAFETY: restores the default disposition of one signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// `ward man --out DIR`: ward.1 and a page per subcommand (`ward-server.1`, ...), each as
/// `man -l` renders it.
fn man_pages(out: &std::path::Path) -> cmd::CmdResult {
    use clap::CommandFactory;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    clap_mangen::generate_to(Cli::command(), out).map_err(|e| format!("{}: {e}", out.display()))?;
    let written = std::fs::read_dir(out)
        .map_err(|e| format!("{}: {e}", out.display()))?
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "1"))
        })
        .count();
    eprintln!("ward: {written} manual pages in {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    openssl_allocator::install();
    // `ward --version` names the commit it was built from and the TLS library: what ward can
    // serve depends on it.
    let version: &'static str = Box::leak(
        format!(
            "{} (commit {}; TLS: {})",
            env!("CARGO_PKG_VERSION"),
            env!("WARD_GIT_COMMIT"),
            ward_tls::openssl_build()
        )
        .into_boxed_str(),
    );
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if !cli.command.serves() {
        output_ends_quietly();
    }
    let result: cmd::CodedResult = match cli.command {
        Command::Server(args) => cmd::server::run(args).map_err(Into::into),
        Command::Tls(command) => cmd::tls::run(command).map_err(Into::into),
        Command::Login(args) => cmd::fleet::login(args),
        Command::Logout { json } => cmd::fleet::logout(json),
        Command::Agent(command) => cmd::agent::run(command),
        Command::Group { target, command } => cmd::fleet::group(&target, command),
        Command::ServerList { target, command } => cmd::fleet::server_list(&target, command),
        Command::Agents { target, command } => cmd::fleet::agents(&target, command),
        Command::Account { target, command } => cmd::fleet::account(&target, command),
        Command::Audit { target, args } => cmd::fleet::audit(&target, args),
        Command::Bench(command) => cmd::bench::run(command).map_err(Into::into),
        Command::Simulate(args) => cmd::simulate::run(args).map_err(Into::into),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ward", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out } => man_pages(&out).map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(error) if wants_json() => {
            let body = serde_json::json!({"error": {"code": error.code, "message": error.message}});
            println!("{body:#}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("ward: error: {}", error.message);
            ExitCode::from(1)
        }
    }
}
