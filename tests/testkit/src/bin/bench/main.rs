//! `cargo run --release -p testkit --bin bench -- <what>`: prints figures; targets live here, not in tests.

mod bot;
mod entra;
mod notify;
mod startup;
mod sync;
mod teams;

fn main() -> std::process::ExitCode {
    bridge::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("help");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let result = match what {
        "startup" => rt.block_on(startup::run(&args[1..])),
        "sync" => rt.block_on(sync::run(&args[1..])),
        "bot" => rt.block_on(bot::run(&args[1..])),
        "teams" => rt.block_on(teams::run(&args[1..])),
        "entra" => rt.block_on(entra::run(&args[1..])),
        // The doubles of `bench entra`, in their own process (its peak RSS is the bridge's).
        "entra-doubles" => rt.block_on(entra::doubles(&args[1..])),
        "notify" => rt.block_on(notify::run(&args[1..])),
        "ent-ldif" => sync::write_directory(&args[1..]),
        _ => {
            eprintln!("usage: bench startup|sync|bot|teams|entra|notify|ent-ldif [options]");
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
