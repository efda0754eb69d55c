//! Helpers shared by the integration tests: a laojun server in this
//! process on a loopback port, the built `laojun` binary as a child process,
//! the captured AlertManager bodies and a builder for new ones, the one
//! check for external components, and `eventually` for waiting on a
//! condition instead of on time.

pub mod alertmanager;
pub mod moto;
pub mod postgres;
pub mod prometheus;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use laojun::client::{ApiClient, ClientError, RunRequest};
use laojun::config::Config;
use laojun::ids::RunId;
use laojun::run::{Run, RunStatus};
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-token-0123456789";

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/alertmanager").join(name)).expect("fixture exists")
}

pub const FIXTURES: &[&str] = &[
    "firing-single.json",
    "resolved-single.json",
    "firing-grouped.json",
    "firing-child-route.json",
    "prometheus-targetdown-firing.json",
    "prometheus-targetdown-resolved.json",
];

/// A server running in this process until dropped.
pub struct Server {
    pub url: String,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    /// Starts with the shipped runbooks and playbooks, a token, a fresh
    /// data dir and port 0; `adjust` may change the config first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
        match Self::try_start_with(adjust).await {
            Ok(server) => server,
            Err(e) => panic!("the server did not start: {e:#}"),
        }
    }

    /// As [`Server::start_with`], with the error when it does not start.
    pub async fn try_start_with(adjust: impl FnOnce(&mut Config)) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            root: repo().to_path_buf(),
            ..Config::default()
        };
        config.auth.token = Some(TOKEN.into());
        adjust(&mut config);
        let data_dir = config.data_dir.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
        let done = tokio::spawn(laojun::serve::run(
            config,
            async {
                let _ = stopped.await;
            },
            move |addr| {
                let _ = addr_tx.send(addr);
            },
        ));
        let Ok(addr) = addr_rx.await else {
            // It ended without reporting an address: say why.
            return Err(match done.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => anyhow::anyhow!("serve ended before it listened"),
                Err(e) => anyhow::anyhow!("serve panicked: {e}"),
            });
        };
        Ok(Server {
            url: format!("http://{addr}"),
            data_dir,
            stop: Some(stop),
            done: Some(done),
            _dir: Some(dir),
        })
    }

    /// Stops it the graceful way and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.expect("server task").expect("server shut down cleanly");
        }
    }

    /// The typed API client with the admin token [`TOKEN`].
    pub fn client(&self) -> ApiClient {
        self.client_as(Some(TOKEN))
    }

    /// The typed API client with `token`, or with none.
    pub fn client_as(&self, token: Option<&str>) -> ApiClient {
        ApiClient::new(&self.url, token.map(str::to_string))
    }
}

/// A folder with runbooks/, playbooks/ and templates/ made of `files`
/// (path relative to the folder → content).
pub fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["runbooks", "playbooks", "templates"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("create folder");
    }
    for (path, content) in files {
        std::fs::write(dir.path().join(path), content).expect("write file");
    }
    dir
}

/// kubectl's stdout for `args` against `kubeconfig`; it must succeed.
pub fn kubectl(binary: &std::path::Path, kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the shipped runbooks, playbooks and templates, with each
/// `(file, from, to)` edit applied (say, a shorter poll for a test); an
/// edit whose `from` is not in the file fails, so it cannot silently stop
/// applying.
pub fn shipped_root_with(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["runbooks", "playbooks", "templates"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("create folder");
        for entry in std::fs::read_dir(repo().join(sub)).expect("shipped folder") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).expect("copy");
        }
    }
    for (file, from, to) in edits {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(from), "{file} no longer contains {from:?}");
        std::fs::write(&path, text.replace(from, to)).expect("write");
    }
    dir
}

/// A local HTTP listener standing in for Slack or any endpoint: records
/// every request body and answers with the statuses queued (200 after).
#[derive(Clone)]
pub struct Listener {
    pub url: String,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
    answers: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u16>>>,
}

impl Listener {
    pub async fn start() -> Listener {
        use axum::routing::any;
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let answers = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let (r, a) = (received.clone(), answers.clone());
        let app = axum::Router::new().fallback(any(move |uri: axum::http::Uri, body: axum::body::Bytes| {
            let (r, a) = (r.clone(), a.clone());
            async move {
                let value = serde_json::from_slice(&body)
                    .unwrap_or(serde_json::Value::String(String::from_utf8_lossy(&body).into()));
                r.lock().unwrap().push((uri.path().to_string(), value));
                let status = a.lock().unwrap().pop_front().unwrap_or(200);
                (axum::http::StatusCode::from_u16(status).unwrap(), "ok")
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Listener { url, received, answers }
    }

    /// The next requests get these statuses, in order.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses.iter().copied());
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.received.lock().unwrap().iter().map(|(_, b)| b.clone()).collect()
    }
}

/// The id of an incident's first run: runbooks start just after the
/// webhook that opened the incident is answered. Panics after 20 s.
pub async fn first_run(c: &ApiClient, incident: impl std::fmt::Display) -> RunId {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let inc = c.incident(&incident).await.expect("the incident is there");
        if let Some(id) = inc.incident.runs.first() {
            return *id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{incident} started no run: {inc:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls a run until its status is one of `until`; panics after 20 s. A
/// run not there yet (404) or any other error answer is polled again; no
/// answer at all is a failure.
pub async fn wait_run(c: &ApiClient, id: impl std::fmt::Display, until: &[RunStatus]) -> Run {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let last = match c.run(&id).await {
            Ok(run) if until.contains(&run.status) => return run,
            Ok(run) => format!("{:?}: {run:#?}", run.status),
            Err(e @ ClientError::Connect { .. }) => panic!("run {id}: {e}"),
            Err(e) => e.to_string(),
        };
        assert!(std::time::Instant::now() < deadline, "run {id} stayed {last}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Starts `runbook` with `request` and waits until the run has succeeded
/// or failed.
pub async fn run_to_end(c: &ApiClient, runbook: &str, request: &RunRequest) -> Run {
    let started = c
        .start_run(runbook, request)
        .await
        .unwrap_or_else(|e| panic!("{runbook} did not start: {e}"));
    wait_run(c, started.id, &[RunStatus::Succeeded, RunStatus::Failed]).await
}

/// A run request with these parameters (a JSON object).
pub fn with_params(object: serde_json::Value) -> RunRequest {
    RunRequest {
        params: params(object),
        ..RunRequest::default()
    }
}

/// The parameters of a run request, from a JSON object.
pub fn params(object: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match object {
        serde_json::Value::Object(map) => map,
        other => panic!("parameters are a JSON object, not {other}"),
    }
}

/// The JSON of a typed answer, for assertions that read it as JSON (a
/// step's `output`, a whole timeline event).
pub fn json_of(value: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).expect("an answer serializes")
}

// ---- external components ----

/// An external program the tests talk to: where it is usually installed,
/// and how to install it.
struct Component {
    name: &'static str,
    /// Looked at in order before `$PATH`.
    paths: &'static [&'static str],
    install: &'static str,
    /// Run it with `--help` to be sure it works: a pyenv shim exists even
    /// when the package is not installed for the active Python.
    probe: bool,
}

const COMPONENTS: &[Component] = &[
    Component {
        name: "prometheus-alertmanager",
        paths: &["/usr/bin/prometheus-alertmanager", "/usr/local/bin/alertmanager"],
        install: "apt-get install prometheus-alertmanager",
        probe: false,
    },
    Component {
        name: "amtool",
        paths: &["/usr/bin/amtool"],
        install: "apt-get install prometheus-alertmanager",
        probe: false,
    },
    Component {
        name: "prometheus",
        paths: &["/usr/bin/prometheus"],
        install: "apt-get install prometheus",
        probe: false,
    },
    Component {
        name: "promtool",
        paths: &["/usr/bin/promtool"],
        install: "apt-get install prometheus",
        probe: false,
    },
    Component {
        name: "moto_server",
        paths: &[],
        install: "pip install 'moto[server]>=5,<6'",
        probe: true,
    },
    Component {
        name: "kubectl",
        paths: &["/usr/bin/kubectl"],
        install: "part of the machine image; else apt-get install kubernetes-client",
        probe: false,
    },
    Component {
        name: "initdb",
        paths: &[
            "/usr/lib/postgresql/17/bin/initdb",
            "/usr/lib/postgresql/16/bin/initdb",
            "/usr/lib/postgresql/15/bin/initdb",
        ],
        install: "apt-get install postgresql",
        probe: false,
    },
    Component {
        name: "chromium",
        paths: &["/usr/bin/chromium"],
        install: "apt-get install chromium chromium-driver",
        probe: false,
    },
    Component {
        name: "chromedriver",
        paths: &["/usr/bin/chromedriver"],
        install: "apt-get install chromium chromium-driver",
        probe: false,
    },
    Component {
        name: "systemd-analyze",
        paths: &["/usr/bin/systemd-analyze"],
        install: "apt-get install systemd",
        probe: false,
    },
];

/// The path of an external `component` (`prometheus-alertmanager`,
/// `amtool`, `prometheus`, `promtool`, `moto_server`, `kubectl`), or `None`
/// when it is not installed. With `CI` set a missing component fails the
/// test, naming it; outside CI the test says `skipped: <component> not
/// installed` where the test runner shows it (not in captured output) and
/// should return.
pub fn require(component: &str) -> Option<PathBuf> {
    let c = COMPONENTS
        .iter()
        .find(|c| c.name == component)
        .unwrap_or_else(|| panic!("support::require knows no component {component:?}; add it to COMPONENTS"));
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(c.name)).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = c
        .paths
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| p.is_file())
        .filter(|p| {
            !c.probe
                || std::process::Command::new(p)
                    .arg("--help")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{component} is not installed, and in CI a missing component is a failure: scripts/test installs it ({})",
            c.install
        );
        // Straight to the process's stderr: the test harness captures
        // eprintln! of passing tests, and a skip must be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {component} not installed ({}; scripts/test installs it)",
            c.install
        );
    }
    found
}

// ---- waiting ----

/// How long `eventually` waits before it calls the condition broken; far
/// more than anything here takes, so only a real failure reaches it.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Polls `check` until it gives a value and returns it; panics naming
/// `what` when it has not after [`PATIENCE`].
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A loopback address nothing listens on, for backends that refuse
/// connections. A port bound and released here could be handed to another
/// test's server a moment later; port 1 is below the range the kernel
/// gives out for port 0, so no test's server ever gets it.
pub const CLOSED: &str = "127.0.0.1:1";

/// A free loopback port: bound, read and released. Another server may take
/// it before the caller's child does, which is why children that listen on
/// one are started through [`spawn_listening`].
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

/// Whether `url` answers with a body that contains `needle`: how a probe
/// for [`spawn_listening`] tells its server from any other.
pub async fn body_contains(url: &str, needle: &str) -> bool {
    match reqwest::get(url).await {
        Ok(r) => r.text().await.is_ok_and(|t| t.contains(needle)),
        Err(_) => false,
    }
}

/// Starts the child `command` makes for a free port and waits until
/// `identify` recognises it at `http://127.0.0.1:<port>`. Between releasing
/// a free port and the child binding it, another test's server can bind it
/// (CI saw a Route53 client answered by the fake Kubernetes server): the
/// child then exits, so a child that exits before it is recognised is
/// started again on another port, and `identify` must check for this
/// server, not for any answer.
pub async fn spawn_listening(
    what: &str,
    mut command: impl FnMut(u16) -> std::process::Command,
    mut identify: impl AsyncFnMut(&str) -> bool,
) -> (std::process::Child, u16) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let port = free_port();
        let mut child = command(port).spawn().unwrap_or_else(|e| panic!("{what} starts: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        loop {
            if identify(&url).await {
                return (child, port);
            }
            if let Some(status) = child.try_wait().expect("child status") {
                eprintln!("{what} exited ({status}) before answering on port {port}; another port");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {PATIENCE:?} waiting for {what} to answer"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

// ---- the built binary ----

/// The built `laojun serve` as a child process, logging JSON to a pipe
/// that a thread reads; killed (SIGKILL) when dropped.
pub struct Binary {
    pub child: std::process::Child,
    pub url: String,
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Starts `laojun serve --listen 127.0.0.1:0 --log-format json` with what
/// `configure` adds (root, data dir, env) and reads its log until it says
/// where it listens.
pub async fn spawn_binary(configure: impl FnOnce(&mut std::process::Command)) -> Binary {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_laojun"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"]);
    configure(&mut command);
    spawn_serving(command).await
}

/// `laojun serve` on `root`'s catalog and the store in `data_dir`, with
/// [`TOKEN`] as its API token.
pub async fn spawn_in(root: &std::path::Path, data_dir: &std::path::Path) -> Binary {
    spawn_binary(|c| {
        c.arg("--root")
            .arg(root)
            .arg("--data-dir")
            .arg(data_dir)
            .env("LAOJUN_API_TOKEN", TOKEN);
    })
    .await
}

/// Starts `command`, which runs `laojun serve ... --log-format json` (maybe
/// through a wrapper such as `unshare`), and waits until it listens.
pub async fn spawn_serving(mut command: std::process::Command) -> Binary {
    use std::io::BufRead;
    command
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = command.spawn().expect("laojun starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = logs.clone();
    // Reads to the end, so the child never blocks on a full pipe; lossy,
    // so no byte of the log is lost to a decoding error.
    let reader = std::thread::spawn(move || {
        let mut stderr = std::io::BufReader::new(stderr);
        let mut line = Vec::new();
        while stderr.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).trim_end_matches('\n').to_string();
            sink.lock().unwrap().push(text);
            line.clear();
        }
    });
    let mut binary = Binary {
        child,
        url: String::new(),
        logs,
        reader: Some(reader),
    };
    let listening = binary.wait_for_log("laojun listening").await;
    let addr = listening["fields"]["addr"].as_str().expect("addr field");
    binary.url = format!("http://{addr}");
    binary
}

impl Binary {
    /// The typed API client with `token`.
    pub fn client(&self, token: &str) -> ApiClient {
        ApiClient::new(&self.url, Some(token.to_string()))
    }

    /// The first log line whose message is `message`, waiting for it.
    pub async fn wait_for_log(&self, message: &str) -> serde_json::Value {
        self.wait_for_logs(message, 1).await.remove(0)
    }

    /// The first `count` log lines whose message is `message`, waiting
    /// for them.
    pub async fn wait_for_logs(&self, message: &str, count: usize) -> Vec<serde_json::Value> {
        eventually(&format!("laojun to log {message:?} {count} time(s)"), async || {
            let mut found = self.logged(message);
            found.truncate(count);
            (found.len() == count).then_some(found)
        })
        .await
    }

    /// The log lines so far whose message is `message`.
    pub fn logged(&self, message: &str) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["fields"]["message"] == message)
            .collect()
    }

    /// Kills it with SIGKILL, waits for it, and returns everything it logged.
    pub fn kill(mut self) -> String {
        self.stop();
        self.logs.lock().unwrap().join("\n")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- webhook bodies ----

/// One alert of an AlertManager v4 webhook body; only what is set is sent.
#[derive(Clone)]
pub struct Alert(serde_json::Map<String, serde_json::Value>);

impl Alert {
    /// A firing alert with these labels.
    pub fn firing(labels: serde_json::Value) -> Alert {
        Alert::new("firing", labels)
    }

    /// A resolved alert with these labels.
    pub fn resolved(labels: serde_json::Value) -> Alert {
        Alert::new("resolved", labels)
    }

    fn new(status: &str, labels: serde_json::Value) -> Alert {
        let mut a = serde_json::Map::new();
        a.insert("status".into(), status.into());
        a.insert("labels".into(), labels);
        Alert(a)
    }

    fn set(mut self, key: &str, value: impl Into<serde_json::Value>) -> Alert {
        self.0.insert(key.into(), value.into());
        self
    }

    pub fn starts_at(self, at: &str) -> Alert {
        self.set("startsAt", at)
    }

    /// `0001-01-01T00:00:00Z` for a firing alert, as AlertManager sends.
    pub fn ends_at(self, at: &str) -> Alert {
        self.set("endsAt", at)
    }

    pub fn fingerprint(self, fingerprint: &str) -> Alert {
        self.set("fingerprint", fingerprint)
    }

    pub fn annotations(self, annotations: serde_json::Value) -> Alert {
        self.set("annotations", annotations)
    }
}

/// An AlertManager v4 webhook body with these alerts: `version` 4 and the
/// group's `status` (firing while any alert fires), as AlertManager sends.
pub fn webhook(alerts: impl IntoIterator<Item = Alert>) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = alerts.into_iter().map(|a| serde_json::Value::Object(a.0)).collect();
    let firing = alerts.iter().any(|a| a["status"] == "firing");
    serde_json::json!({
        "version": "4",
        "status": if firing { "firing" } else { "resolved" },
        "alerts": alerts,
    })
}

/// [`webhook`] as bytes, for [`ApiClient::post_alerts`].
pub fn webhook_body(alerts: impl IntoIterator<Item = Alert>) -> Vec<u8> {
    serde_json::to_vec(&webhook(alerts)).expect("a JSON value serializes")
}

/// A token named NAME with this role; `as_token` is a client using it.
pub fn token(name: &str, role: laojun::config::Role) -> laojun::config::NamedToken {
    laojun::config::NamedToken {
        name: name.into(),
        role,
        token: format!("{name}-token-0123456789abcdef"),
    }
}

pub fn as_token(server: &Server, name: &str) -> ApiClient {
    server.client_as(Some(&format!("{name}-token-0123456789abcdef")))
}
