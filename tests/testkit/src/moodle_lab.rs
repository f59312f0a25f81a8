//! The real Moodle of `../shared/moodle-lab`, started by `scripts/install-test-deps.sh` (the README's
//! test command runs it first). Tests find it through `MOODLE_LAB_DIR` (default `/tmp/moodle-lab`):
//! URL and database settings from its `config.php`, tokens from `token.txt` / `token_nocap.txt`.
//! Every test works under its own username / cohort prefix, so tests share the one site safely.
//! Also here: the SMTP sink Moodle mails to (`MOODLE_LAB_SMTP`) and a read of role assignments
//! straight from the lab's database (Moodle has no web service listing role assignments of users
//! who are not enrolled).

use bridge::config::{MoodleSettings, Secret};
use bridge::moodle::MoodleClient;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

pub struct Lab {
    pub dir: PathBuf,
    pub url: String,
    token: String,
    nocap_token: String,
    db: DbSettings,
}

struct DbSettings {
    host: String,
    port: String,
    name: String,
    user: String,
    pass: String,
}

fn php_value(config: &str, key: &str) -> Option<String> {
    // `$CFG->dbname    = 'moodle';` or `'dbport' => 5433,`
    let at = config.find(key)?;
    let rest = config[at + key.len()..].trim_start_matches([' ', '=', '>']);
    let end = rest.find([';', ',', '\n'])?;
    Some(rest[..end].trim().trim_matches('\'').to_string())
}

/// The lab, checked once per test binary; a missing lab fails the test with how to start it.
pub fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let dir: PathBuf = std::env::var("MOODLE_LAB_DIR")
            .unwrap_or_else(|_| "/tmp/moodle-lab".into())
            .into();
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| {
                panic!(
                    "the Moodle lab is not set up in {} ({name}: {e}); run scripts/test.sh \
                     (or scripts/install-test-deps.sh) first",
                    dir.display()
                )
            })
        };
        let config = read("www/moodle/config.php");
        let get = |k: &str| php_value(&config, k).unwrap_or_else(|| panic!("config.php: no {k}"));
        Lab {
            url: get("$CFG->wwwroot"),
            token: read("token.txt").trim().to_string(),
            nocap_token: read("token_nocap.txt").trim().to_string(),
            db: DbSettings {
                host: get("$CFG->dbhost"),
                port: get("'dbport'"),
                name: get("$CFG->dbname"),
                user: get("$CFG->dbuser"),
                pass: get("$CFG->dbpass"),
            },
            dir,
        }
    })
}

impl Lab {
    pub fn settings(&self) -> MoodleSettings {
        MoodleSettings {
            url: self.url.parse().expect("lab URL"),
            token: Secret::new(self.token.clone()),
            // The lab's PHP runs with max_input_vars = 5000.
            max_form_fields: 5000,
            timeout_secs: 120,
        }
    }

    pub fn client(&self) -> MoodleClient {
        MoodleClient::new(&self.settings()).expect("client")
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn nocap_token(&self) -> &str {
        &self.nocap_token
    }

    /// Rows of a read-only SQL query on the lab's database, columns split on `|`.
    pub fn sql(&self, query: &str) -> Vec<Vec<String>> {
        let d = &self.db;
        let out = std::process::Command::new("psql")
            .args([
                "-h", &d.host, "-p", &d.port, "-U", &d.user, "-d", &d.name, "-At", "-F", "|", "-c",
                query,
            ])
            .env("PGPASSWORD", &d.pass)
            .output()
            .expect("psql (postgresql-client, installed with the lab)");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect()
    }

    /// `(username, role shortname, course idnumber)` of every course-level role assignment held by
    /// users whose username starts with `prefix`.
    pub fn course_roles(
        &self,
        prefix: &str,
    ) -> std::collections::BTreeSet<(String, String, String)> {
        assert!(
            prefix.chars().all(|c| c.is_ascii_alphanumeric()),
            "prefix {prefix:?} must be plain"
        );
        self.sql(&format!(
            "select u.username, r.shortname, c.idnumber from mdl_role_assignments ra \
             join mdl_user u on u.id = ra.userid join mdl_role r on r.id = ra.roleid \
             join mdl_context x on x.id = ra.contextid and x.contextlevel = 50 \
             join mdl_course c on c.id = x.instanceid \
             where u.deleted = 0 and u.username like '{prefix}%'"
        ))
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect()
    }
}

/// A prefix no other test (of this run or an earlier one on the same lab) uses: lowercase
/// letters and digits only, so it fits usernames, idnumbers and e-mail local parts.
pub fn unique_prefix(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 10_000_000_000;
    format!(
        "t{t:x}{}{tag}",
        N.fetch_add(1, Ordering::Relaxed) + std::process::id() % 100 * 100
    )
}

/// One mail Moodle handed to the sink.
#[derive(Debug, Clone)]
pub struct Mail {
    pub rcpt: Vec<String>,
    pub data: String,
}

/// Mail received on `MOODLE_LAB_SMTP` (the address the lab was configured with). One sink per
/// test binary, kept for the process; tests read the mails addressed to their own prefix.
pub fn smtp_sink() -> &'static Arc<Mutex<Vec<Mail>>> {
    static SINK: OnceLock<Arc<Mutex<Vec<Mail>>>> = OnceLock::new();
    SINK.get_or_init(|| {
        let addr = std::env::var("MOODLE_LAB_SMTP").unwrap_or_else(|_| "127.0.0.1:2526".into());
        let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
            panic!("SMTP sink: cannot listen on {addr} (MOODLE_LAB_SMTP): {e}")
        });
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let m = mails.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let m = m.clone();
                std::thread::spawn(move || {
                    let _ = serve_smtp(conn, &m);
                });
            }
        });
        mails
    })
}

/// Mails whose recipients contain `needle` (a test's prefix).
pub fn mails_to(needle: &str) -> Vec<Mail> {
    smtp_sink()
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.rcpt.iter().any(|r| r.contains(needle)))
        .cloned()
        .collect()
}

/// Just enough SMTP for PHPMailer: greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
fn serve_smtp(conn: std::net::TcpStream, mails: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut lines = BufReader::new(conn);
    out.write_all(b"220 sink ESMTP\r\n")?;
    let mut rcpt = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") {
            out.write_all(b"250-sink\r\n250 8BITMIME\r\n")?;
        } else if cmd.starts_with("RCPT") {
            rcpt.push(line.trim_end()[8..].trim().to_string());
            out.write_all(b"250 ok\r\n")?;
        } else if cmd.starts_with("DATA") {
            out.write_all(b"354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line.trim_end() == "." {
                    break;
                }
                data.push_str(&line);
            }
            mails.lock().unwrap().push(Mail {
                rcpt: std::mem::take(&mut rcpt),
                data,
            });
            out.write_all(b"250 queued\r\n")?;
        } else if cmd.starts_with("QUIT") {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            // HELO, MAIL FROM, RSET, NOOP…
            if cmd.starts_with("RSET") {
                rcpt.clear();
            }
            out.write_all(b"250 ok\r\n")?;
        }
    }
}

impl Lab {
    /// The Moodle code tree (`$CFG->dirroot`).
    pub fn root(&self) -> PathBuf {
        self.dir.join("www/moodle")
    }

    /// Run a CLI script of `tests/moodle-lab/` (`php SCRIPT --root=<dirroot> ARGS…`) and parse the
    /// JSON object it prints last.
    pub fn php_json(&self, script: &str, args: &[String]) -> serde_json::Value {
        let path = crate::repo_root().join("tests/moodle-lab").join(script);
        let out = std::process::Command::new("php")
            .arg(&path)
            .arg(format!("--root={}", self.root().display()))
            .args(args)
            .output()
            .expect("php (installed with the lab)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "php {script} {args:?}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("");
        serde_json::from_str(last).unwrap_or_else(|e| {
            panic!("php {script}: no JSON object in its output ({e}):\n{stdout}")
        })
    }

    /// Put the plugin folder `src` at `rel` in the Moodle tree (e.g. `message/output/teamsbridge`)
    /// and install or upgrade it when the installed version is not `src`'s (what `setup.sh` does
    /// with `MOODLE_LAB_PLUGINS`). Serialised by a lock file: one upgrade at a time.
    pub fn ensure_plugin(&self, component: &str, rel: &str, src: &std::path::Path) {
        let _lock = PluginLock::take(&self.dir.join("plugins.lock.d"));
        let dest = self.root().join(rel);
        let same = std::process::Command::new("diff")
            .arg("-rq")
            .arg(src)
            .arg(&dest)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !same {
            let _ = std::fs::remove_dir_all(&dest);
            let status = std::process::Command::new("cp")
                .arg("-r")
                .arg(src)
                .arg(&dest)
                .status()
                .expect("cp");
            assert!(status.success(), "copy {} into the lab", src.display());
        }
        let want = std::fs::read_to_string(src.join("version.php"))
            .ok()
            .and_then(|v| {
                let at = v.find("$plugin->version")?;
                let digits: String = v[at..]
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(char::is_ascii_digit)
                    .collect();
                Some(digits)
            })
            .expect("version.php with $plugin->version");
        let have = self.sql(&format!(
            "select value from mdl_config_plugins where plugin = '{component}' and name = 'version'"
        ));
        if have.first().map(|r| r[0].as_str()) != Some(want.as_str()) {
            let out = std::process::Command::new("php")
                .arg(self.root().join("admin/cli/upgrade.php"))
                .args(["--non-interactive", "--allow-unstable"])
                .output()
                .expect("php");
            assert!(
                out.status.success(),
                "upgrade.php installing {component}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A directory created exclusively: held while it exists, removed on drop.
struct PluginLock(PathBuf);

impl PluginLock {
    fn take(path: &std::path::Path) -> PluginLock {
        let start = std::time::Instant::now();
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => return PluginLock(path.to_path_buf()),
                // A holder that died leaves the directory: take it over after a while.
                Err(_) if start.elapsed() > std::time::Duration::from_secs(180) => {
                    let _ = std::fs::remove_dir(path);
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
    }
}

impl Drop for PluginLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
