//! `bench sync --users 50000`: initial sync of generated ENT people from an LDIF export file
//! into the in-process Moodle double over loopback HTTP, then a run with no change.
//! Prints wall time, web-service calls, source requests and peak RSS (VmHWM). `--parents` adds
//! about one parent per pupil with 1–3 links each (SYNC_PARENTS on), and prints the calls per
//! 100,000 directory entries.

use bridge::config::Source;
use bridge::store::sqlite::SqliteStore;
use bridge::store::SharedStore;
use bridge::sync::run::{run_inline, SyncEnv};
use bridge::sync::{SyncOptions, SyncSettings};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use testkit::ent_data::{self, Spec};
use testkit::fake_moodle::FakeMoodle;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let mut users = 50_000usize;
    let mut parents = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--parents" {
            parents = true;
        } else if a == "--users" {
            users = it
                .next()
                .ok_or_else(|| anyhow::anyhow!("--users N"))?
                .parse()?;
        }
    }
    let dir = tempfile_dir()?;
    let ldif = dir.join("people.ldif");
    let spec = Spec {
        parents,
        ..Spec::new(users)
    };
    let (parent_count, links) = if parents {
        (ent_data::pupils(&spec).len(), ent_data::parent_links(&spec))
    } else {
        (0, 0)
    };
    let entries = users + parent_count;
    let t = Instant::now();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&ldif)?);
        ent_data::write_ldif(&mut f, &spec)?;
    }
    println!(
        "generated {users} people + {parent_count} parents ({links} parent links) as LDIF ({} MB) in {:.1}s",
        std::fs::metadata(&ldif)?.len() / 1_000_000,
        t.elapsed().as_secs_f64()
    );
    let fake = FakeMoodle::start().await;
    const PARENT_ROLE_ID: i64 = 9;
    fake.lock().assignable_roles.insert(PARENT_ROLE_ID);
    let mut pairs = vec![
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", ldif.to_str().unwrap_or_default()),
    ];
    if parents {
        pairs.push(("SYNC_PARENTS", "on"));
        pairs.push((
            "SYNC_ROLE_IDS",
            "manager=1,coursecreator=2,editingteacher=3,teacher=4,student=5,parent=9",
        ));
    }
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut src = Source::from_map(map);
    let settings = SyncSettings::load(&mut src);
    anyhow::ensure!(src.problems().is_empty(), "{:?}", src.problems());
    let store: SharedStore = Arc::new(SqliteStore::open(&dir.join("bench.sqlite"))?);
    store.ensure_tables().await?;
    let env = SyncEnv {
        settings: Arc::new(settings),
        store,
        blobs: None,
        moodle: fake.client(),
        teams: None,
        entra: None,
    };
    let opts = SyncOptions::scheduled();

    let t = Instant::now();
    let r = run_inline(&env, &opts, None).await?;
    let wall = t.elapsed();
    let calls = fake.lock().total_calls();
    println!("\n== initial sync ({users} people + {parent_count} parents = {entries} entries, LDIF source, Moodle double over loopback HTTP, MOODLE_MAX_FORM_FIELDS=1000)");
    print!("{}", r.render());
    println!("wall time: {:.1}s", wall.as_secs_f64());
    println!("web-service calls: {calls} ({:?})", fake.calls());
    println!(
        "web-service calls per 100,000 entries: {:.0}",
        calls as f64 * 100_000.0 / entries as f64
    );
    if parents {
        let linked = fake
            .lock()
            .role_assignments
            .iter()
            .filter(|(role, _, level, _)| *role == PARENT_ROLE_ID && level == "user")
            .count();
        println!("parent links in Moodle (parent role, child's user context): {linked} of {links}");
    }
    println!("moodle users now: {}", fake.lock().users.len());
    println!(
        "peak RSS (VmHWM, whole process incl. the double and SQLite): {:.1} MiB",
        vm_hwm_kib() as f64 / 1024.0
    );

    fake.reset_calls();
    let t = Instant::now();
    let r2 = run_inline(&env, &opts, None).await?;
    let wall2 = t.elapsed();
    println!("\n== second run, no change");
    print!("{}", r2.render());
    println!("wall time: {:.2}s", wall2.as_secs_f64());
    println!("source requests: {}", r2.source_requests);
    let (total, writes) = {
        let st = fake.lock();
        (st.total_calls(), st.write_calls())
    };
    println!("moodle calls: {total}, writes: {writes}");
    println!("peak RSS (VmHWM): {:.1} MiB", vm_hwm_kib() as f64 / 1024.0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("bench-sync-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// `bench ent-ldif --users N`: the generated SDET directory as LDIF on stdout, for
/// `scripts/bench-moodle-lab.sh` to load into slapd (the same people `bench sync` uses).
/// `--no-duplicate-logins` leaves out the duplicate logins: Moodle's own auth_ldap sync aborts
/// on them (`dmlwriteexception` on its temporary table's unique username), so a side-by-side
/// run needs a directory both can load.
pub fn write_directory(args: &[String]) -> anyhow::Result<()> {
    let mut users = 2_000usize;
    let mut duplicates = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--no-duplicate-logins" {
            duplicates = false;
        } else if a == "--users" {
            users = it
                .next()
                .ok_or_else(|| anyhow::anyhow!("--users N"))?
                .parse()?;
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut spec = Spec::new(users);
    if !duplicates {
        spec.duplicate_login_every = 0;
    }
    ent_data::write_ldif(&mut out, &spec)?;
    use std::io::Write;
    out.flush()?;
    Ok(())
}
