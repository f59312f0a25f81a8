//! The `handler` binary: parse the command line, build the app, run it.

use bridge::app::{self, AppState};
use bridge::cli::{Cli, Command};
use bridge::config::Settings;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    bridge::install_crypto_provider();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_settings() -> anyhow::Result<Settings> {
    let settings = Settings::from_process()?;
    bridge::telemetry::init(&settings.core.log_level, settings.core.log_json);
    Ok(settings)
}

/// Port given by the Functions host (the older name is still set by some hosts).
fn host_port() -> Option<u16> {
    ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"]
        .iter()
        .find_map(|k| std::env::var(k).ok())
        .and_then(|v| v.trim().parse().ok())
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        None => match host_port() {
            Some(port) => {
                // Bind before anything slow: the host polls readiness every 25 ms and gives up after 30-60 s.
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
                let settings = load_settings()?;
                let state = AppState::build(settings, false).await?;
                tracing::info!(port, store = %state.store.describe(), "custom handler listening");
                axum::serve(listener, app::custom_handler_router(state)).await?;
                Ok(0)
            }
            None => {
                eprintln!("FUNCTIONS_CUSTOMHANDLER_PORT is not set: run `handler serve` for the standalone server, or `handler --help`.");
                Ok(2)
            }
        },
        Some(Command::Serve { addr }) => {
            let settings = load_settings()?;
            let addr = addr.unwrap_or(settings.core.serve_addr);
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let state = AppState::build(settings, true).await?;
            bridge::serve::run(state, listener).await?;
            Ok(0)
        }
        Some(Command::CheckConfig { offline }) => {
            let settings = match Settings::from_process() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(1);
                }
            };
            println!("settings: ok");
            if offline {
                return Ok(0);
            }
            let state = AppState::build(settings, false).await?;
            let mut failed = false;
            for check in app::check_services(&state).await {
                match check.outcome {
                    Ok(detail) => println!("{}: ok — {detail}", check.service),
                    Err(e) => {
                        failed = true;
                        println!("{}: FAILED — {e}", check.service);
                    }
                }
            }
            Ok(u8::from(failed))
        }
        Some(Command::Settings { format }) => {
            let docs = Settings::documented();
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&docs.iter().map(|d| serde_json::json!({"name": d.name, "secret": d.secret, "description": d.description})).collect::<Vec<_>>())?),
                "example" => {
                    let mut values = serde_json::Map::new();
                    values.insert("FUNCTIONS_WORKER_RUNTIME".into(), "custom".into());
                    for d in &docs {
                        values.insert(d.name.clone(), serde_json::Value::String(String::new()));
                    }
                    println!("{}", serde_json::to_string_pretty(&serde_json::json!({"IsEncrypted": false, "Values": values}))?);
                }
                _ => {
                    for d in &docs {
                        println!("{:<40} {:<7} {}", d.name, if d.secret { "secret" } else { "" }, d.description);
                    }
                }
            }
            Ok(0)
        }
        Some(Command::Enqueue { queue, body }) => {
            let settings = load_settings()?;
            let state = AppState::build(settings, true).await?;
            state.store.ensure_tables().await?;
            let q = state.local_queue.as_ref().expect("built with a local queue");
            let id = q.enqueue(&queue, &body).await?;
            println!("{id}");
            Ok(0)
        }
        Some(Command::Sync(args)) => {
            let settings = load_settings()?;
            let state = AppState::build(settings, false).await?;
            let code = bridge::sync::cli::run(state, args).await?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
    }
}
