//! The `handler` binary: parse the command line, build the app, run it.

use bridge::app::{self, AppState};
use bridge::cli::{Cli, Command, SettingsFormat};
use bridge::outln;
use bridge::redact::redact;
use bridge::settings::Settings;
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
            // The last guard: an error may quote a remote answer.
            eprintln!("error: {}", redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn load_settings() -> anyhow::Result<Settings> {
    let settings = Settings::from_process()?;
    bridge::telemetry::init(&settings.core.log_level, settings.core.log_json);
    Ok(settings)
}

/// A `local.settings.json` skeleton: defaults filled in, secrets empty, and a `_description`
/// object beside `Values` (the host ignores unknown top-level keys).
fn settings_example(docs: &[bridge::config::SettingDoc]) -> anyhow::Result<String> {
    let mut values = serde_json::Map::new();
    let mut descriptions = serde_json::Map::new();
    values.insert("FUNCTIONS_WORKER_RUNTIME".into(), "custom".into());
    for d in docs {
        let v = match (&d.name[..], d.secret) {
            // The host's own storage (timers) may be Azurite; the app keeps its state in SQLite,
            // so the skeleton works standalone (`handler serve`) without Azure or Azurite.
            ("AzureWebJobsStorage", _) => "UseDevelopmentStorage=true".to_string(),
            ("STORE_BACKEND", _) => "sqlite".to_string(),
            (_, true) => String::new(),
            _ => d.default.clone().unwrap_or_default(),
        };
        values.insert(d.name.clone(), v.into());
        descriptions.insert(d.name.clone(), d.description.clone().into());
    }
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "IsEncrypted": false,
        "Values": values,
        "_description": descriptions,
    }))?)
}

/// AWS Lambda (feature `lambda`): the same public router behind API Gateway / ALB events.
#[cfg(feature = "lambda")]
async fn run_lambda() -> anyhow::Result<u8> {
    let settings = load_settings()?;
    let state = AppState::build(settings, false).await?;
    lambda_http::run(app::public_router(state))
        .await
        .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))?;
    Ok(0)
}

async fn check_store(state: &AppState) -> anyhow::Result<()> {
    let within = std::time::Duration::from_secs(state.settings.core.store_check_secs);
    bridge::store::check(&state.settings.storage, state.store.as_ref(), within).await
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let platform = bridge::config::Platform::from_process();
    #[cfg(feature = "lambda")]
    if cli.command.is_none() && platform.lambda_runtime {
        return run_lambda().await;
    }
    match cli.command {
        None => match platform.custom_handler_port {
            Some(port) => {
                // Bind before anything slow: the host polls readiness every 25 ms and gives up after 30-60 s.
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
                let settings = load_settings()?;
                let state = AppState::build(settings, false).await?;
                // An unreachable store fails start-up in seconds, naming the endpoint and the cause,
                // instead of every invocation hanging in the SDK's retries.
                check_store(&state).await?;
                tracing::info!(port, store = %state.store.describe(), "custom handler listening");
                let limits = bridge::http_server::Limits::from_settings(&state.settings.core);
                bridge::http_server::serve(
                    listener,
                    app::custom_handler_router(state),
                    limits,
                    std::future::pending(),
                )
                .await?;
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
            check_store(&state).await?;
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
            outln!("settings: ok");
            if offline {
                return Ok(0);
            }
            // Warnings met while opening the store (a loosened file mode) reach stderr.
            bridge::telemetry::init(&settings.core.log_level, settings.core.log_json);
            let store = match &settings.storage {
                bridge::config::StorageSettings::Local { sqlite_path, .. } => {
                    format!("sqlite:{}", sqlite_path.display())
                }
                bridge::config::StorageSettings::Azure(az) => {
                    format!("azure account {}", az.account)
                }
            };
            let state = match AppState::build(settings, false).await {
                Ok(s) => s,
                Err(e) => {
                    outln!(
                        "store: FAILED — cannot open {store}: {}",
                        redact(&format!("{e:#}"))
                    );
                    return Ok(1);
                }
            };
            let mut failed = false;
            for check in app::check_services(&state).await {
                match check.outcome {
                    Ok(detail) => outln!("{}: ok — {detail}", check.service),
                    Err(e) => {
                        failed = true;
                        outln!("{}: FAILED — {}", check.service, redact(&e));
                    }
                }
            }
            Ok(u8::from(failed))
        }
        Some(Command::Settings { format }) => {
            let docs = Settings::documented();
            match format {
                SettingsFormat::Json => {
                    let rows: Vec<_> = docs
                        .iter()
                        .map(|d| serde_json::json!({"name": d.name, "secret": d.secret, "default": d.default, "description": d.description}))
                        .collect();
                    outln!("{}", serde_json::to_string_pretty(&rows)?);
                }
                SettingsFormat::Example => outln!("{}", settings_example(&docs)?),
                SettingsFormat::Markdown => {
                    outln!("| setting | secret | default | what it is |\n|---|---|---|---|");
                    for d in &docs {
                        let default = d
                            .default
                            .as_deref()
                            .map(|v| format!("`{v}`"))
                            .unwrap_or_default();
                        outln!(
                            "| `{}` | {} | {} | {} |",
                            d.name,
                            if d.secret { "yes" } else { "" },
                            default,
                            d.description
                        );
                    }
                }
                SettingsFormat::Table => {
                    for d in &docs {
                        outln!(
                            "{:<40} {:<7} {}",
                            d.name,
                            if d.secret { "secret" } else { "" },
                            d.description
                        );
                    }
                }
            }
            Ok(0)
        }
        Some(Command::Enqueue { queue, body }) => {
            let settings = load_settings()?;
            let state = AppState::build(settings, true).await?;
            state.store.ensure_tables().await?;
            let q = state
                .local_queue
                .as_ref()
                .expect("built with a local queue");
            let id = q.enqueue(&queue, &body).await?;
            outln!("{id}");
            Ok(0)
        }
        Some(Command::Sync(args)) => {
            let settings = load_settings()?;
            let state = AppState::build(settings, false).await?;
            let code = bridge::sync::cli::run(state, args).await?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Some(Command::Admin {
            command: bridge::cli::AdminCommand::HashPassword,
        }) => {
            use std::io::{BufRead, IsTerminal};
            if std::io::stdin().is_terminal() {
                eprint!("admin password (shown as typed; pipe it in to hide it): ");
            }
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.chars().count() < 12 {
                eprintln!("the admin password must have 12 characters or more");
                return Ok(1);
            }
            let hash = bridge::admin::session::hash_password(password)
                .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
            outln!("{hash}");
            Ok(0)
        }
        Some(Command::Admin {
            command: bridge::cli::AdminCommand::SignInLink,
        }) => {
            let settings = load_settings()?;
            if settings.admin.platform_auth || !settings.admin.serve_sign_in() {
                eprintln!("{}", bridge::admin::session::NOT_CONFIGURED);
                return Ok(1);
            }
            let addr = settings.core.serve_addr;
            let state = AppState::build(settings, false).await?;
            state.store.ensure_tables().await?;
            let now = chrono::Utc::now().timestamp();
            let token = bridge::admin::link::create(&state.store, now).await?;
            eprintln!("one-time admin sign-in link (valid 10 minutes, once):");
            outln!("{}", bridge::admin::link::url(&addr, &token));
            Ok(0)
        }
        Some(Command::Demo { args }) => {
            use bridge::cli::DemoLaunch;
            let exe = std::env::current_exe().ok();
            let cwd = std::env::current_dir().ok();
            let mut cmd = match bridge::cli::demo_launch(exe.as_deref(), cwd.as_deref()) {
                DemoLaunch::Sibling(path) => std::process::Command::new(path),
                DemoLaunch::Checkout(dir) => {
                    eprintln!(
                        "handler demo: building and running the demo of the checkout in {}",
                        dir.display()
                    );
                    let mut c = std::process::Command::new("cargo");
                    c.current_dir(dir)
                        .args(["run", "--quiet", "-p", "testkit", "--bin", "demo", "--"]);
                    c
                }
                DemoLaunch::Howto => {
                    eprintln!("{}", bridge::cli::DEMO_HOWTO);
                    return Ok(2);
                }
            };
            // The demo's output is the user's: same terminal, and its exit status is ours.
            let status = cmd
                .args(&args)
                .status()
                .map_err(|e| anyhow::anyhow!("cannot start the demo: {e}"))?;
            Ok(status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)))
        }
        Some(Command::TeamsApp(args)) => {
            let settings = load_settings()?;
            let state = AppState::build(settings, false).await?;
            let code = bridge::teams_app::cli::run(state, args).await?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
    }
}
