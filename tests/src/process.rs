//! The service as a process of its own: the built binaries, starting one
//! configured through `MEDIA_*` variables as an operator would, its log,
//! its metrics, and killing it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media_api::Settings;
use media_api::ids::UserId;
use secrecy::SecretString;
use tokio::io::AsyncBufReadExt;

use crate::eventually;

/// The `media-api` binary cargo built next to this test.
pub fn service_binary() -> PathBuf {
    built_binary("media-api")
}

/// A program of the stock clients' virtualenv
/// (`infra/install-protocol-clients.sh`, run by `infra/test.sh`).
pub fn venv_program(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let local = std::env::var_os("MEDIA_INFRA_DIR")
        .map_or_else(|| root.join("infra/.local"), PathBuf::from);
    let program = local.join("venv/bin").join(name);
    assert!(
        program.is_file(),
        "{} is missing: infra/install-protocol-clients.sh installs it (infra/test.sh runs it)",
        program.display()
    );
    program
}

/// The `mediactl` command line.
pub fn mediactl_binary() -> PathBuf {
    built_binary("mediactl")
}

/// The `media-render` binary the workers run for each job.
pub fn render_binary() -> PathBuf {
    built_binary("media-render")
}

fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it first (`cargo build --workspace`, which infra/test.sh does)",
        bin.display()
    );
    bin
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits up to 30 s for `{base}/readyz` to answer 200.
pub async fn wait_ready(base: &str) -> bool {
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(30), || {
        let (client, url) = (client.clone(), format!("{base}/readyz"));
        async move {
            client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await
}

/// `media-api` as a separate process (so a test can kill it) on the same
/// backends as `settings`, configured through `MEDIA_*` variables as an
/// operator would.
pub fn service_command(settings: &Settings, secret: &str) -> tokio::process::Command {
    use secrecy::ExposeSecret;
    let mut cmd = tokio::process::Command::new(service_binary());
    cmd.env("MEDIA_DATA_DIR", &settings.data_dir)
        .env("MEDIA_JWT_SECRET", secret)
        .env("MEDIA_REDIS_NAMESPACE", &settings.redis_namespace)
        .env_remove("MEDIA_DATABASE_URL")
        .env_remove("MEDIA_REDIS_URL")
        .env_remove("MEDIA_BLOB_STORE")
        .env_remove("MEDIA_CDN_BASE_URL")
        .env_remove("MEDIA_PUBLIC_BASE_URL")
        // Set by the test, if at all, never inherited from the runner's shell.
        .env_remove("MEDIA_JOBS__SERVE_WORKERS")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(url) = &settings.database_url {
        cmd.env("MEDIA_DATABASE_URL", url.expose_secret());
    }
    if let Some(url) = &settings.redis_url {
        cmd.env("MEDIA_REDIS_URL", url.expose_secret());
    }
    if let Some(store) = &settings.blob_store {
        cmd.env("MEDIA_BLOB_STORE", store);
    }
    if let Some(cdn) = &settings.cdn_base_url {
        cmd.env("MEDIA_CDN_BASE_URL", cdn);
    }
    cmd
}

/// The service as a separate process: it can be killed, and its `/metrics`
/// are its own (an in-process [`TestApp`] shares the process-wide metrics
/// recorder with every other test in the binary, so its counters prove
/// nothing about one test).
#[derive(Debug)]
pub struct ServiceProcess {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    tokens: media_api::auth::TokenAuthority,
    /// Its standard error (the log), as it comes.
    log: Arc<Mutex<String>>,
    /// Reads the log until the process closes it.
    reader: tokio::task::JoinHandle<()>,
}

impl ServiceProcess {
    /// Starts `media-api serve` on `settings`' backends on `port`, with the
    /// given extra `MEDIA_*` variables, and waits until it is ready.
    pub async fn start_with(
        settings: &Settings,
        port: u16,
        secret: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = service_command(settings, secret);
        cmd.arg("serve")
            .env("MEDIA_LISTEN", format!("127.0.0.1:{port}"))
            .env("MEDIA_JOBS__RENDER_PROGRAM", render_binary());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start media-api");
        let log = Arc::new(Mutex::new(String::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let collected = log.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = collected.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let ready = wait_ready(&base).await;
        assert!(ready, "the service process did not become ready");
        let tokens = media_api::auth::TokenAuthority::new(&SecretString::from(secret.to_owned()));
        Self {
            child,
            base,
            tokens,
            log,
            reader,
        }
    }

    /// [`ServiceProcess::start_with`] with no extra variables.
    pub async fn start(settings: &Settings, port: u16, secret: &str) -> Self {
        Self::start_with(settings, port, secret, &[]).await
    }

    /// A token with the `admin` scope.
    pub fn admin_token(&self) -> String {
        self.tokens
            .mint(
                &UserId::parse("operator").expect("valid user"),
                true,
                Duration::from_secs(3600),
            )
            .expect("mint")
    }

    /// A valid bearer token for `user`.
    pub fn token(&self, user: &str) -> String {
        self.tokens
            .mint(
                &UserId::parse(user).expect("valid user"),
                false,
                Duration::from_secs(3600),
            )
            .expect("mint")
    }

    /// The sum of this process's samples of a metric whose labels include
    /// every `key="value"` in `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric_in(&self.metrics_text().await, name, labels)
    }

    /// Its whole `/metrics` page, read with an admin token.
    pub async fn metrics_text(&self) -> String {
        reqwest::Client::new()
            .get(format!("{}/metrics", self.base))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Waits for it to exit by itself, failing the test after `limit`.
    pub async fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the service exits in time")
            .expect("wait")
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// SIGKILL: no shutdown, no cleanup.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill");
    }

    /// SIGKILL, then the whole log it wrote.
    pub async fn kill_and_log(mut self) -> String {
        self.child.kill().await.expect("kill");
        let _ = (&mut self.reader).await;
        self.log()
    }
}

/// The sum of a metric's samples in a Prometheus text exposition, over the
/// label sets that include every `key="value"` in `labels`.
pub fn metric_in(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
