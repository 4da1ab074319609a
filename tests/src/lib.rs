//! Helpers for the end-to-end tests: build the service on port 0 against
//! either backend set, isolated per test, and talk to it over real HTTP.
//!
//! The real set (PostgreSQL, Redis, Garage) is found through the variables
//! `infra/up.sh` writes to `infra/.local/env`. When they are missing, tests
//! that need them fail with a message saying how to start them: they never
//! skip silently.

mod fault;
mod fixtures;
mod process;
mod socket;

pub use fault::{FaultProxy, OwnRedis};
pub use fixtures::{ffmpeg_fixture, ffprobe, h264_clip, random_bytes, shuffle, test_image};
pub use process::{
    ServiceProcess, free_port, mediactl_binary, metric_in, render_binary, service_binary,
    service_command, venv_program, wait_ready,
};
pub use socket::{Ended, Socket};

use std::net::SocketAddr;
use std::time::Duration;

use media_api::Settings;
use media_api::http::AppState;
use media_api::ids::UserId;
use secrecy::SecretString;
use sqlx::Connection;
use tempfile::TempDir;

/// Which backends a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendSet {
    /// SQLite, in-process progress, filesystem blobs: no other process.
    Embedded,
    /// PostgreSQL, Redis and Garage, started by `infra/up.sh`.
    Real,
}

/// Reads a variable the real backend set needs, or fails the test saying how to get it.
pub fn real_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: end-to-end tests need the real backends. Run `infra/test.sh`, \
             or `infra/up.sh` and then `. infra/.local/env` before `cargo test`."
        )
    })
}

/// A unique, lowercase name for per-test isolation.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Creates an empty PostgreSQL database for one test and returns its URL.
pub async fn fresh_postgres_database() -> String {
    let admin = real_env("MEDIA_DATABASE_URL");
    let name = unique("t_");
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at MEDIA_DATABASE_URL: {e}"));
    sqlx::Executor::execute(&mut conn, format!("create database {name}").as_str())
        .await
        .expect("create a test database");
    let (base, _) = admin.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

/// Settings for one isolated test: a temporary data dir, port 0, and on the
/// real set a fresh database, Redis namespace and S3 key prefix.
pub async fn test_settings(set: BackendSet) -> (Settings, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    // In-process workers run the real `media-render` child, as production does.
    settings.jobs.render_program = Some(render_binary());
    settings.jobs.serve_workers = Some(1);
    settings.jobs.poll_interval = Duration::from_millis(500);
    if set == BackendSet::Real {
        settings.database_url = Some(SecretString::from(fresh_postgres_database().await));
        settings.redis_url = Some(SecretString::from(real_env("MEDIA_REDIS_URL")));
        settings.redis_namespace = unique("t");
        settings.blob_store = Some(format!(
            "{}/{}",
            real_env("MEDIA_BLOB_STORE").trim_end_matches('/'),
            unique("t")
        ));
        real_env("AWS_ENDPOINT_URL");
    }
    (settings, dir)
}

/// A running service and a client for it.
#[derive(Debug)]
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// HTTP client.
    pub client: reqwest::Client,
    /// The service's state, to reach its backends directly.
    pub state: AppState,
    /// Which set it runs on.
    pub set: BackendSet,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _data_dir: TempDir,
}

impl TestApp {
    /// Builds and starts the service on `set`.
    pub async fn spawn(set: BackendSet) -> Self {
        let (settings, dir) = test_settings(set).await;
        Self::spawn_with(set, settings, dir).await
    }

    /// Starts the service with the given settings.
    pub async fn spawn_with(set: BackendSet, settings: Settings, dir: TempDir) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            media_api::telemetry::init_tracing(settings.log_format);
        }
        let app = media_api::Application::build(settings)
            .await
            .expect("the service builds");
        let addr = app.local_addr();
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
            state,
            set,
            stop: Some(stop),
            server: Some(server),
            _data_dir: dir,
        }
    }

    /// An absolute URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A download URL the service answered (absolute, or relative to it) as
    /// an absolute one.
    pub fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            self.url(url)
        } else {
            url.to_owned()
        }
    }

    /// A valid bearer token for `user`.
    pub fn token(&self, user: &str) -> String {
        self.state
            .tokens
            .mint(
                &UserId::parse(user).expect("valid user"),
                false,
                Duration::from_secs(3600),
            )
            .expect("mint")
    }

    /// A second API node on the same database, Redis and store, with the
    /// same JWT secret (the real set only: the embedded one is one process).
    pub async fn another_node(&self) -> TestApp {
        assert_eq!(
            self.set,
            BackendSet::Real,
            "only the real set has many nodes"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = (*self.state.settings).clone();
        let secret = media_api::secrets::load_or_create_secret(
            settings.jwt_secret.as_ref(),
            &settings.data_dir,
        )
        .expect("the first node's secret");
        settings.jwt_secret = Some(secret);
        settings.data_dir = dir.path().to_path_buf();
        settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        TestApp::spawn_with(self.set, settings, dir).await
    }

    /// A token with the `admin` scope (operators: `/metrics`, `/readyz` in detail).
    pub fn admin_token(&self) -> String {
        self.state
            .tokens
            .mint(
                &UserId::parse("operator").expect("valid user"),
                true,
                Duration::from_secs(3600),
            )
            .expect("mint")
    }

    /// A token for `user` that expires `left` from now (negative: ago),
    /// issued an hour before it expires.
    pub fn token_expiring(&self, user: &str, left: i64) -> String {
        let now = std::time::SystemTime::now();
        let expires = if left >= 0 {
            now + Duration::from_secs(left.unsigned_abs())
        } else {
            now - Duration::from_secs(left.unsigned_abs())
        };
        self.state
            .tokens
            .mint_at(
                &UserId::parse(user).expect("valid user"),
                false,
                expires - Duration::from_secs(3600),
                Duration::from_secs(3600),
            )
            .expect("mint")
    }

    /// Stops the server and starts it again on the same data and backends
    /// with its settings changed by `change` (as an operator edits the
    /// configuration and restarts).
    pub async fn restart(mut self, change: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = (*self.state.settings).clone();
        change(&mut settings);
        settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let dir = std::mem::replace(&mut self._data_dir, tempfile::tempdir().expect("tempdir"));
        let set = self.set;
        self.stop().await;
        TestApp::spawn_with(set, settings, dir).await
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
    }
}

/// A response header as text (empty when absent).
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Reads a response body as JSON, checking the status first.
pub async fn json_of(response: reqwest::Response, status: u16) -> serde_json::Value {
    let got = response.status().as_u16();
    let content_type = header(&response, "content-type");
    let body = response.text().await.expect("body");
    assert_eq!(got, status, "unexpected status; body: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({content_type}): {e}: {body}"))
}

/// Asserts that a response is an RFC 9457 problem with `status` and `code`,
/// and returns its body.
pub async fn problem_of(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let body = json_of(response, status).await;
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string(), "{body}");
    assert!(body["detail"].is_string(), "{body}");
    assert!(body["type"].is_string(), "{body}");
    body
}

/// Polls `check` every 100 ms until it is true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A user of the API: a token and the app it talks to.
#[derive(Debug, Clone)]
pub struct User<'a> {
    /// The app.
    pub app: &'a TestApp,
    /// Bearer token.
    pub token: String,
}

impl TestApp {
    /// A user with a fresh token.
    pub fn user(&self, name: &str) -> User<'_> {
        User {
            app: self,
            token: self.token(name),
        }
    }
}

impl User<'_> {
    /// `POST /v1/uploads` with a JSON body.
    pub async fn create_upload(&self, body: serde_json::Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url("/v1/uploads"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("create upload")
    }

    /// Opens a session for `data` and returns its description.
    pub async fn open(&self, name: &str, size: usize) -> serde_json::Value {
        let r = self
            .create_upload(serde_json::json!({ "file_name": name, "size": size }))
            .await;
        json_of(r, 201).await
    }

    /// `PUT /v1/uploads/{id}/chunks/{n}`.
    pub async fn put_chunk(
        &self,
        id: &str,
        n: impl std::fmt::Display,
        bytes: Vec<u8>,
    ) -> reqwest::Response {
        self.app
            .client
            .put(self.app.url(&format!("/v1/uploads/{id}/chunks/{n}")))
            .bearer_auth(&self.token)
            .body(bytes)
            .send()
            .await
            .expect("put chunk")
    }

    /// `GET` on a path with this user's token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.app
            .client
            .get(self.app.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("get")
    }

    /// `POST` with no body.
    pub async fn post(&self, path: &str) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("post")
    }

    /// A request with a JSON body.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Downloads the way a client does: `GET` a `…/content` path, expect
    /// `302`, follow the URL; answers its `content-type` and bytes.
    pub async fn download(&self, path: &str) -> (String, Vec<u8>) {
        let r = self.get(path).await;
        assert_eq!(r.status(), 302, "{path}");
        let url = self.app.absolute(&header(&r, "location"));
        let r = self.app.client.get(url).send().await.expect("download");
        assert_eq!(r.status(), 200, "{path}");
        let content_type = header(&r, "content-type");
        (content_type, r.bytes().await.expect("bytes").to_vec())
    }

    /// `DELETE`.
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.app
            .client
            .delete(self.app.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("delete")
    }

    /// A one-request upload (`POST /v1/media?file_name=NAME`), expecting 201.
    pub async fn post_media(&self, name: &str, data: &[u8]) -> serde_json::Value {
        let r = self
            .app
            .client
            .post(self.app.url(&format!("/v1/media?file_name={name}")))
            .bearer_auth(&self.token)
            .body(data.to_vec())
            .send()
            .await
            .expect("post media");
        json_of(r, 201).await
    }

    /// `POST /v1/uploads/{id}/complete`.
    pub async fn complete(&self, id: &str) -> reqwest::Response {
        self.post(&format!("/v1/uploads/{id}/complete")).await
    }

    /// Sends the given chunks of `data`, `parallel` at a time, in the order given.
    pub async fn send_chunks(
        &self,
        id: &str,
        data: &[u8],
        chunk_size: usize,
        order: &[usize],
        parallel: usize,
    ) {
        use futures_util::StreamExt;
        futures_util::stream::iter(order.iter().copied())
            .map(|n| {
                let start = (n - 1) * chunk_size;
                let bytes = data[start..(start + chunk_size).min(data.len())].to_vec();
                async move {
                    let r = self.put_chunk(id, n, bytes).await;
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    assert_eq!(status, 200, "chunk {n}: {body}");
                }
            })
            .buffer_unordered(parallel)
            .collect::<Vec<()>>()
            .await;
    }

    /// Uploads `data` whole: open, every chunk (shuffled, 4 in flight), complete.
    pub async fn upload(&self, name: &str, data: &[u8]) -> serde_json::Value {
        let session = self.open(name, data.len()).await;
        let id = session["upload_id"].as_str().expect("id").to_owned();
        let chunk_size = session["chunk_size"].as_u64().expect("chunk size") as usize;
        let total = session["total_chunks"].as_u64().expect("total") as usize;
        let mut order: Vec<usize> = (1..=total).collect();
        shuffle(&mut order, data.len() as u64);
        self.send_chunks(&id, data, chunk_size, &order, 4).await;
        json_of(self.complete(&id).await, 200).await
    }
}

/// A group made by `owner` with `members`; answers its id.
pub async fn group(owner: &User<'_>, members: &[&str]) -> String {
    let r = owner
        .send_json(
            reqwest::Method::POST,
            "/v1/conversations",
            &serde_json::json!({"kind": "group", "title": "Trip", "members": members}),
        )
        .await;
    json_of(r, 201).await["conversation_id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Sends a text into a conversation; answers the message.
pub async fn say(user: &User<'_>, conversation: &str, text: &str) -> serde_json::Value {
    let r = user
        .send_json(
            reqwest::Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            &serde_json::json!({"client_message_id": uuid::Uuid::now_v7().to_string(), "text": text}),
        )
        .await;
    json_of(r, 201).await
}

/// The bytes of a media item read straight from the blob store, bypassing the API.
pub async fn stored_bytes(app: &TestApp, media_id: &str) -> Vec<u8> {
    let id = media_api::ids::MediaId::parse(media_id).expect("media id");
    let media = app
        .state
        .backends
        .media
        .media(id)
        .await
        .expect("metadata")
        .expect("media exists");
    let key = media.storage_key;
    app.state
        .backends
        .blobs
        .get(&key, None)
        .await
        .expect("object")
        .collect()
        .await
        .expect("read")
}

/// Declares `async fn $name(set: BackendSet)` as two tests, one per backend
/// set: `$name::embedded` and `$name::postgres_redis_garage`.
#[macro_export]
macro_rules! both_sets {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn embedded() {
                super::$name($crate::BackendSet::Embedded).await
            }

            #[tokio::test]
            async fn postgres_redis_garage() {
                super::$name($crate::BackendSet::Real).await
            }
        }
    };
}

/// A direct connection to `app`'s database.
async fn raw_connection(app: &TestApp) -> sqlx::AnyConnection {
    connect_to(&app.state.settings).await
}

/// A direct connection to the database `settings` name (a service process's).
pub async fn connect_to(settings: &Settings) -> sqlx::AnyConnection {
    use secrecy::ExposeSecret;
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = match &settings.database_url {
        Some(url) => url.expose_secret().to_owned(),
        None => format!("sqlite://{}", settings.data_dir.join("media.db").display()),
    };
    sqlx::AnyConnection::connect(&url).await.expect("connect")
}

/// Runs one statement on `app`'s database directly: a state the service's
/// own code cannot produce today (a stale mark, a row a bug left), to show
/// the service recovers from it.
pub async fn raw_sql(app: &TestApp, sql: &str) {
    let mut conn = raw_connection(app).await;
    sqlx::query(sql).execute(&mut conn).await.expect(sql);
}

/// The first column of a query on `app`'s database, as text: what the
/// service recorded, where the API does not show it (the order jobs ran in).
pub async fn raw_column(app: &TestApp, sql: &str) -> Vec<String> {
    let mut conn = raw_connection(app).await;
    sqlx::query_scalar(sql)
        .fetch_all(&mut conn)
        .await
        .expect(sql)
}

/// Reads an event stream (`text/event-stream`) in a task of its own: its
/// text until `until` appears (or, without one, until the stream ends), a
/// pause longer than `pause`, or an error.
pub fn collect_events(
    stream: reqwest::Response,
    pause: Duration,
    until: Option<&'static str>,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut text = String::new();
        let mut body = stream.bytes_stream();
        while let Ok(Some(Ok(piece))) = tokio::time::timeout(pause, body.next()).await {
            text.push_str(&String::from_utf8_lossy(&piece));
            if until.is_some_and(|u| text.contains(u)) {
                break;
            }
        }
        text
    })
}
