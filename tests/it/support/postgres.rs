//! A throwaway PostgreSQL cluster for the test run, from Debian's
//! `postgresql`: `initdb` and `pg_ctl` as the `postgres` user in a temp
//! dir, on loopback with its own port and socket dir. A watcher stops it
//! and removes its files once this test process is gone. Each test gets a
//! database of its own.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::require;

struct Cluster {
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Set before the first `database()` for a cluster that syncs its commits
/// (benchmarks); the tests' cluster does not (its durability is not what
/// they test).
#[allow(dead_code)] // the benches set it
pub static DURABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn run(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{command:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `command` as the `postgres` user when this process is root (initdb and
/// postgres refuse to run as root), else as it is.
fn as_postgres(program: &std::path::Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start(initdb: PathBuf) -> Result<Cluster, String> {
    let bin = initdb.parent().unwrap().to_path_buf();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (data, sockets) = (dir.path().join("data"), dir.path().join("sockets"));
    std::fs::create_dir(&sockets).map_err(|e| e.to_string())?;
    certificates(dir.path())?;
    let root = run(Command::new("id").arg("-u"))?.trim() == "0";
    if root {
        run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()))?;
    }
    run(as_postgres(&initdb, root)
        .args([
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data))?;
    let pg_ctl = bin.join("pg_ctl");
    // The port is picked here and bound by the server a moment later, when
    // another test's server may have taken it: then pg_ctl fails, and the
    // cluster starts again on another port.
    let mut attempts = 0;
    let port = loop {
        attempts += 1;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let started = run(as_postgres(&pg_ctl, root)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("postgres.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync={} \
                 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                sockets.display(),
                if DURABLE.load(Ordering::SeqCst) { "on" } else { "off" },
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display(),
            ))
            .args(["-w", "start"]));
        match started {
            Ok(_) => break port,
            Err(e) if attempts >= 3 => return Err(e),
            Err(e) => eprintln!("PostgreSQL did not start on port {port} ({e}); another port"),
        }
    };
    // A watcher stops the cluster (fast shutdown) and removes its files
    // once this process has exited, however it exits.
    let script = format!(
        "while [ -d /proc/{parent} ]; do sleep 1; done; {pg_ctl} -D {data} -m fast -w stop; rm -rf {dir}",
        parent = std::process::id(),
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.path().display(),
    );
    as_postgres(std::path::Path::new("sh"), root)
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + super::PATIENCE;
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("PostgreSQL did not accept connections on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Cluster { port, bin, dir })
}

/// A CA, and a certificate it signs for 127.0.0.1, so the cluster also
/// speaks TLS (`sslmode=require` with `ca_file`).
fn certificates(dir: &std::path::Path) -> Result<(), String> {
    let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=laojun test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").map_err(|e| e.to_string())?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ])?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())
}

/// The CA that signed the test cluster's certificate.
pub fn ca_file() -> PathBuf {
    match CLUSTER.get() {
        Some(Ok(c)) => c.dir.path().join("ca.crt"),
        _ => panic!("ca_file() before database()"),
    }
}

/// The URL of a new, empty database on the run's cluster (started on
/// first use), or `None` outside CI when PostgreSQL is not installed.
pub fn database() -> Option<String> {
    let initdb = require("initdb")?;
    let cluster = match CLUSTER.get_or_init(|| start(initdb)) {
        Ok(c) => c,
        Err(e) => panic!("the test PostgreSQL cluster did not start: {e}"),
    };
    let name = format!("laojun_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    run(Command::new(cluster.bin.join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "-q",
            "-c",
        ])
        .arg(format!("CREATE DATABASE {name}")))
    .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    Some(format!("postgres://postgres@127.0.0.1:{}/{name}", cluster.port))
}
