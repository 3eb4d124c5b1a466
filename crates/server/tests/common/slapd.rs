//! A throwaway OpenLDAP server (Debian's `slapd`) for tests: a generated `slapd.conf` and an MDB
//! database in a temporary directory, loaded with `slapadd` from LDIF, served on a free loopback
//! port by an ordinary `slapd` process that is killed when the test drops it. Needs the `slapd`
//! package (`apt-get install slapd ldap-utils`); [`Slapd::start`] answers `None` where it is
//! missing, and the test says it skipped.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";

pub struct Slapd {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback TCP port (free when asked; slapd binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Slapd {
    /// Starts slapd serving `suffix` (e.g. `dc=other,dc=test`) with the entries of `ldif`
    /// (which must include the suffix's own entry), with the core, cosine and inetOrgPerson
    /// schemas. Anonymous reads are allowed (slapd's default).
    pub fn start(suffix: &str, ldif: &str) -> Option<Slapd> {
        if !Path::new(SLAPD).exists() || !Path::new(SLAPADD).exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let conf = dir.path().join("slapd.conf");
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 pidfile {dir}/slapd.pid\nargsfile {dir}/slapd.args\n\
                 modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
                 database mdb\nsuffix \"{suffix}\"\nrootdn \"cn=admin,{suffix}\"\n\
                 directory {db}\nmaxsize 10485760\n",
                dir = dir.path().display(),
                db = db.display(),
            ),
        )
        .unwrap();
        let data = dir.path().join("data.ldif");
        std::fs::write(&data, ldif).unwrap();
        let added = Command::new(SLAPADD)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&data)
            .output()
            .expect("run slapadd");
        assert!(
            added.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("slapd.log")).unwrap();
            // `-d 0`: stay in the foreground (a child this test owns), logging nothing.
            let mut child = Command::new(SLAPD)
                .arg("-f")
                .arg(&conf)
                .arg("-h")
                .arg(format!("ldap://127.0.0.1:{port}/"))
                .args(["-d", "0"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start slapd");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Slapd {
                        child,
                        port,
                        _dir: dir,
                    });
                }
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile: another one
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "slapd did not start: {}",
            std::fs::read_to_string(dir.path().join("slapd.log")).unwrap_or_default()
        );
    }
}
