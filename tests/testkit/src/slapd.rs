//! A throwaway slapd: cn=config built with `slapadd -n0` (core, cosine, inetorgperson, nis and
//! the SDET schema), one mdb database with a size limit below the data (so only paged searches
//! see everything), data loaded offline with `slapadd -n1`, served on a free loopback port.
//! slapd runs under a small shell that kills it and removes the directory when our stdin
//! closes, so even a slapd kept in a `static` goes away with the test process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const SUFFIX: &str = "dc=ent,dc=example";
pub const ROOT_DN: &str = "cn=admin,dc=ent,dc=example";
pub const ROOT_PW: &str = "admin-secret";
pub const READER_DN: &str = "cn=reader,dc=ent,dc=example";
pub const READER_PW: &str = "reader-secret";
pub const SIZE_LIMIT: usize = 500;

pub struct Slapd {
    pub url: String,
    pub dir: PathBuf,
    child: Child,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // Closing the shell's stdin makes it kill slapd and remove the directory.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find(cands: &[&str]) -> Option<String> {
    cands
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|s| s.to_string())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Slapd {
    /// Start slapd with `data` (an LDIF of the `dc=ent,dc=example` tree) already loaded.
    pub fn start(data: &[u8]) -> Slapd {
        let slapd = find(&["/usr/sbin/slapd", "/usr/local/libexec/slapd"])
            .expect("slapd is not installed (apt-get install slapd ldap-utils)");
        let slapadd = find(&["/usr/sbin/slapadd", "/usr/local/sbin/slapadd"]).expect("slapadd");
        let schema_dir =
            std::env::var("LDAP_SCHEMA_DIR").unwrap_or_else(|_| "/etc/ldap/schema".into());
        let module_dir = ["/usr/lib/ldap", "/usr/lib/openldap", "/usr/lib64/openldap"]
            .into_iter()
            .find(|d| {
                Path::new(&format!("{d}/back_mdb.la")).exists()
                    || Path::new(&format!("{d}/back_mdb.so")).exists()
            });
        let dir = std::env::temp_dir().join(format!(
            "slapd-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(dir.join("slapd.d")).unwrap();
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let d = dir.display();
        let mut cfg = format!("dn: cn=config\nobjectClass: olcGlobal\ncn: config\nolcPidFile: {d}/slapd.pid\nolcArgsFile: {d}/slapd.args\n\n");
        if let Some(m) = module_dir {
            cfg.push_str(&format!("dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\nolcModulePath: {m}\nolcModuleLoad: back_mdb\n\n"));
        }
        cfg.push_str("dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n");
        for s in ["core", "cosine", "inetorgperson", "nis"] {
            cfg.push_str(
                &std::fs::read_to_string(format!("{schema_dir}/{s}.ldif")).expect("system schema"),
            );
            cfg.push('\n');
        }
        let sdet = crate::fixtures_dir().join("ent/sdet.schema.ldif");
        cfg.push_str(
            &std::fs::read_to_string(&sdet).unwrap_or_else(|e| panic!("{}: {e}", sdet.display())),
        );
        cfg.push('\n');
        cfg.push_str(&format!(
            "dn: olcDatabase={{-1}}frontend,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcFrontendConfig\nolcDatabase: {{-1}}frontend\n\n\
             dn: olcDatabase={{0}}config,cn=config\nobjectClass: olcDatabaseConfig\nolcDatabase: {{0}}config\nolcRootDN: cn=admin,cn=config\n\n\
             dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\nolcDatabase: {{1}}mdb\nolcSuffix: {SUFFIX}\n\
             olcDbDirectory: {d}/db\nolcDbMaxSize: 1073741824\nolcRootDN: {ROOT_DN}\nolcRootPW: {ROOT_PW}\n\
             olcSizeLimit: size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} size.prtotal=unlimited\n\
             olcDbIndex: objectClass eq\nolcDbIndex: uid eq\nolcDbIndex: ENTPersonLogin eq\n\
             olcAccess: to attrs=userPassword by anonymous auth by * none\nolcAccess: to * by * read\n\n"
        ));
        std::fs::write(dir.join("config.ldif"), cfg).unwrap();
        run(Command::new(&slapadd)
            .arg("-n0")
            .arg("-F")
            .arg(dir.join("slapd.d"))
            .arg("-l")
            .arg(dir.join("config.ldif")));
        let mut all = data.to_vec();
        all.extend_from_slice(format!("\ndn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: {READER_PW}\n\n").as_bytes());
        std::fs::write(dir.join("data.ldif"), all).unwrap();
        run(Command::new(&slapadd)
            .arg("-q")
            .arg("-n1")
            .arg("-F")
            .arg(dir.join("slapd.d"))
            .arg("-l")
            .arg(dir.join("data.ldif")));
        // modifyTimestamp has whole seconds: an entry loaded in the second a test's first sync starts is
        // (rightly) read again by the next incremental run. Leave that second before anyone reads.
        let loaded_in = unix_secs();
        let port = crate::free_port();
        let url = format!("ldap://127.0.0.1:{port}/");
        // The shell waits on its stdin: when this process goes (even without Drop), it kills slapd and cleans up.
        let script = format!("{slapd} -d 0 -h '{url}' -F '{d}/slapd.d' 2>>'{d}/slapd.log' & pid=$!; read _ignored; kill $pid; wait $pid; rm -rf '{d}'");
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start slapd");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "slapd did not start: {}",
                std::fs::read_to_string(dir.join("slapd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        while unix_secs() <= loaded_in {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Slapd { url, dir, child }
    }

    /// A directory holding the generated SDET people of `spec`.
    pub fn with_people(spec: &crate::ent_data::Spec) -> Slapd {
        let mut data = Vec::new();
        crate::ent_data::write_ldif(&mut data, spec).unwrap();
        Slapd::start(&data)
    }

    /// Apply an LDIF change file online as the root DN (ldapmodify).
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", self.url.as_str(), "-D", ROOT_DN, "-w", ROOT_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify (ldap-utils)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}
