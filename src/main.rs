use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use keyway::ops::Instance;
use keyway::ops::config::Config;
use keyway::ops::reload::Operations;
use keyway::ops::reload::Source;
use std::sync::Arc;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// A Redis-compatible proxy that routes key prefixes to Redis, memcached or
/// an in-process store.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Config file (TOML). Without one, keyway serves a single in-memory
    /// namespace on 127.0.0.1:6380.
    #[arg(long, env = "KEYWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, overriding the config's `server.listen`
    /// (what a container sets, whatever config file it mounts).
    #[arg(long, env = "KEYWAY_LISTEN")]
    listen: Option<String>,
    /// Address of the metrics and probes listener (/metrics, /healthz,
    /// /readyz), overriding the config's `server.metrics_listen`.
    #[arg(long, env = "KEYWAY_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Check the config, print every problem or a summary, and exit.
    #[arg(long)]
    check_config: bool,
    /// With --check-config: also connect to every backend (TLS and login
    /// included) and say which answered, within 5 s each.
    #[arg(long, requires = "check_config")]
    connect: bool,
    /// Runtime worker threads. Default: one fewer than the cores (at least
    /// one). 1 runs everything on one thread, with no cross-thread wakeups.
    #[arg(long, env = "KEYWAY_THREADS")]
    threads: Option<usize>,
    /// Log lines as text (default) or JSON; RUST_LOG filters them.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Move a mirrored namespace with its data, on a running keyway:
    /// `keyway migrate sessions backfill RATE 5000`, then `verify`; or
    /// `status`, `stop`. Follows the task with a progress bar.
    Migrate {
        namespace: String,
        /// backfill, verify, status or stop.
        action: String,
        /// Options of KEYWAY MIGRATE: RATE <keys/s>, BATCH <n>, RESUME
        /// (backfill); SAMPLE <fraction>, TOLERANCE <ms> (verify).
        options: Vec<String>,
        /// keyway's address.
        #[arg(long, default_value = "127.0.0.1:6380")]
        addr: String,
        /// A user allowed KEYWAY (@admin), with --password.
        #[arg(long, env = "KEYWAY_USER")]
        user: Option<String>,
        #[arg(long, env = "KEYWAY_PASSWORD")]
        password: Option<String>,
        /// Start the task and return without following it.
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn load(args: &Args) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(listen) = &args.listen {
        config.server.listen = listen.clone();
    }
    if let Some(m) = &args.metrics_listen {
        config.server.metrics_listen = Some(m.clone());
    }
    if args.listen.is_some() || args.metrics_listen.is_some() {
        config.validate().map_err(|e| e.to_string())?;
    }
    Ok(config)
}

/// One fewer than the cores, at least one: a core is left to the kernel's
/// network work and to the clients and servers that share the host. On 2
/// cores shared with redis-benchmark, one thread serves 25% more GETs than
/// two, proxying at pipeline 1 (two threads wake each other on every
/// command) and as much as 25% more from the memory backend at pipeline 16
/// (its table locks and counters no longer move between cores).
fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).max(1)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Migrate {
        namespace,
        action,
        options,
        addr,
        user,
        password,
        detach,
    }) = args.command
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(rt) = rt else {
            eprintln!("cannot start the runtime");
            return ExitCode::FAILURE;
        };
        let req = keyway::ops::migrate_cli::Request {
            addr,
            user,
            password,
            namespace,
            action,
            options,
            detach,
        };
        return match rt.block_on(keyway::ops::migrate_cli::run(req)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("keyway migrate: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match load(&args) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        print!("{}", keyway::ops::check::summary(&config));
        let text = args
            .config
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        for w in keyway::ops::check::warnings(&config, text.as_deref()) {
            println!("warning: {w}");
        }
        if args.connect {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(rt) = rt else {
                eprintln!("cannot start the runtime");
                return ExitCode::FAILURE;
            };
            let (ok, report) = rt.block_on(keyway::ops::check::connect(
                &config,
                std::time::Duration::from_secs(5),
            ));
            print!("{report}");
            if !ok {
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours for a terminal only: a file or a log collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_env_filter(filter)
            .init(),
    }
    let threads = args.threads.unwrap_or_else(default_threads);
    let runtime = match threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // What was read, and where each prefix goes, as --check-config says.
    match &args.config {
        Some(path) => info!(config = %path.display(), "config read"),
        None => info!("no config file: the built-in one (one memory namespace)"),
    }
    for line in keyway::ops::check::summary(&config).lines().skip(1) {
        info!("{}", line.trim());
    }
    runtime.block_on(async {
        let instance = match Instance::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let ops = instance.operations();
        ops.set_source(Source {
            path: args.config.clone(),
            listen_override: args.listen.clone(),
        });
        reload_on_sighup(ops);
        instance.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// Re-reads the config file on every SIGHUP.
fn reload_on_sighup(ops: Arc<Operations>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        info!("SIGHUP: reloading the config");
                        ops.reload();
                    }
                });
            }
            Err(e) => warn!(error = %e, "cannot watch SIGHUP; reload is off"),
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
