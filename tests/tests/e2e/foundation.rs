//! The foundation as a user sees it: health, readiness (with a backend going
//! down and coming back), the problem shape of errors, authentication, the
//! command line, and graceful shutdown.

use std::process::Stdio;
use std::time::Duration;

use media_e2e::both_sets;
use media_e2e::{
    BackendSet, TestApp, eventually, free_port, json_of, problem_of, service_binary, test_settings,
    wait_ready,
};
use secrecy::SecretString;

both_sets!(health_and_readiness_on_both_backend_sets);
async fn health_and_readiness_on_both_backend_sets(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(json_of(health, 200).await["status"], "ok");

    // A load balancer sees the status alone.
    let bare = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        json_of(bare, 200).await,
        serde_json::json!({"status": "ready"})
    );
    // An operator sees each backend.
    let ready = app
        .client
        .get(app.url("/readyz"))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .expect("readyz");
    let body = json_of(ready, 200).await;
    let expected = match set {
        BackendSet::Embedded => ["sqlite", "memory", "filesystem"],
        BackendSet::Real => ["postgres", "redis", "s3"],
    };
    for (backend, kind) in ["metadata", "progress", "blobs"].iter().zip(expected) {
        assert_eq!(body["backends"][backend]["kind"], kind, "{body}");
        assert_eq!(body["backends"][backend]["up"], true, "{body}");
    }
    let metrics = |token: Option<String>| {
        let r = app.client.get(app.url("/metrics"));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
        .send()
    };
    problem_of(metrics(None).await.expect("metrics"), 401, "token-missing").await;
    problem_of(
        metrics(Some(app.token("alice"))).await.expect("metrics"),
        403,
        "admin-required",
    )
    .await;
    problem_of(
        metrics(Some("nope".into())).await.expect("metrics"),
        401,
        "token-malformed",
    )
    .await;
    let metrics = metrics(Some(app.admin_token())).await.expect("metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains("route=\"/readyz\""), "{text}");
    app.stop().await;
}

/// A private Redis, so stopping it cannot disturb other tests.
struct PrivateRedis {
    port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed by infra/up.sh");
        Self { port, child }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn ready_status(app: &TestApp) -> (u16, serde_json::Value) {
    let r = app
        .client
        .get(app.url("/readyz"))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .expect("readyz");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

#[tokio::test]
async fn readiness_names_a_backend_that_is_down_and_recovers_without_restart() {
    let mut redis = PrivateRedis::start(free_port());
    let port = redis.port;
    let (mut settings, dir) = test_settings(BackendSet::Real).await;
    settings.redis_url = Some(SecretString::from(format!("redis://127.0.0.1:{port}")));
    // The service connects at start-up, so wait until the private Redis answers.
    let probe = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
    assert!(
        eventually(Duration::from_secs(10), || {
            let probe = probe.clone();
            async move { probe.get_multiplexed_async_connection().await.is_ok() }
        })
        .await,
        "private redis did not start"
    );
    let app = TestApp::spawn_with(BackendSet::Real, settings, dir).await;
    assert_eq!(ready_status(&app).await.0, 200);

    redis.stop();
    let (status, body) = ready_status(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "not-ready");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("redis"),
        "{body}"
    );
    assert_eq!(body["backends"]["progress"]["up"], false, "{body}");
    assert_eq!(body["backends"]["metadata"]["up"], true, "{body}");
    assert_eq!(body["backends"]["blobs"]["up"], true, "{body}");
    // Without an admin token: that it is not ready, not why.
    let bare = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    let bare = problem_of(bare, 503, "not-ready").await;
    assert!(bare.get("backends").is_none(), "{bare}");
    assert!(
        !bare["detail"].as_str().unwrap_or("").contains("redis"),
        "{bare}"
    );

    let _redis = PrivateRedis::start(port);
    assert!(
        eventually(Duration::from_secs(20), || async {
            ready_status(&app).await.0 == 200
        })
        .await,
        "readiness did not recover after Redis came back"
    );
    app.stop().await;
}

#[tokio::test]
async fn errors_are_problems_with_stable_codes() {
    let app = TestApp::spawn(BackendSet::Embedded).await;
    let c = &app.client;

    problem_of(
        c.get(app.url("/no/such/route")).send().await.expect("send"),
        404,
        "not-found",
    )
    .await;
    problem_of(
        c.delete(app.url("/healthz")).send().await.expect("send"),
        405,
        "method-not-allowed",
    )
    .await;

    // Each way a bearer token can fail.
    let me = app.url("/v1/me");
    problem_of(c.get(&me).send().await.expect("send"), 401, "token-missing").await;
    let r = c
        .get(&me)
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"media\"")
    );
    problem_of(r, 401, "token-malformed").await;
    problem_of(
        c.get(&me)
            .bearer_auth("not.a.jwt")
            .send()
            .await
            .expect("send"),
        401,
        "token-malformed",
    )
    .await;
    let foreign = media_api::auth::TokenAuthority::new(&SecretString::from(
        "another-secret-that-is-long-enough-0123456789".to_owned(),
    ))
    .mint(
        &media_api::ids::UserId::parse("mallory").expect("valid"),
        true,
        Duration::from_secs(60),
    )
    .expect("mint");
    problem_of(
        c.get(&me).bearer_auth(foreign).send().await.expect("send"),
        401,
        "token-invalid",
    )
    .await;
    // Tokens not valid yet, or valid for too long, are refused too.
    let alice = media_api::ids::UserId::parse("alice").expect("valid");
    let tokens = &app.state.tokens;
    let soon = std::time::SystemTime::now() + Duration::from_secs(600);
    let early = tokens
        .mint_at(&alice, false, soon, Duration::from_secs(60))
        .expect("mint");
    problem_of(
        c.get(&me).bearer_auth(early).send().await.expect("send"),
        401,
        "token-not-yet-valid",
    )
    .await;
    let long = tokens
        .mint(&alice, false, Duration::from_secs(24 * 3600 + 60))
        .expect("mint");
    problem_of(
        c.get(&me).bearer_auth(long).send().await.expect("send"),
        401,
        "token-lifetime-too-long",
    )
    .await;
    let secret = media_api::secrets::load_or_create_secret(None, &app.state.settings.data_dir)
        .expect("the service's secret");
    let key = jsonwebtoken::EncodingKey::from_secret(
        secrecy::ExposeSecret::expose_secret(&secret).as_bytes(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("sign")
    };
    let not_before =
        sign(serde_json::json!({"sub": "alice", "iat": now, "exp": now + 600, "nbf": now + 300}));
    problem_of(
        c.get(&me)
            .bearer_auth(not_before)
            .send()
            .await
            .expect("send"),
        401,
        "token-not-yet-valid",
    )
    .await;
    let no_iat = sign(serde_json::json!({"sub": "alice", "exp": now + 600}));
    problem_of(
        c.get(&me).bearer_auth(no_iat).send().await.expect("send"),
        401,
        "token-malformed",
    )
    .await;
    let fine = sign(serde_json::json!({"sub": "alice", "iat": now, "exp": now + 600, "nbf": now}));
    json_of(
        c.get(&me).bearer_auth(fine).send().await.expect("send"),
        200,
    )
    .await;

    let expired = app.token_expiring("alice", -3540);
    problem_of(
        c.get(&me).bearer_auth(expired).send().await.expect("send"),
        401,
        "token-expired",
    )
    .await;

    let ok = c
        .get(&me)
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .expect("send");
    let body = json_of(ok, 200).await;
    assert_eq!(body["user"], "alice");
    assert_eq!(body["admin"], false);

    // Every response carries a request id, including errors.
    let r = c.get(app.url("/nope")).send().await.expect("send");
    assert!(r.headers().contains_key("x-request-id"));
    // A client's own id is kept when it is short and plain, replaced
    // otherwise (it goes into every log line of the request).
    let with_id = |id: String| c.get(app.url("/healthz")).header("x-request-id", id).send();
    let r = with_id("trace-42.a:b_c".into()).await.expect("send");
    assert_eq!(media_e2e::header(&r, "x-request-id"), "trace-42.a:b_c");
    for bad in [
        "x".repeat(65),
        "a b".into(),
        "quote\"d".into(),
        "sémantique".into(),
    ] {
        let r = with_id(bad.clone()).await.expect("send");
        let given = media_e2e::header(&r, "x-request-id");
        assert_ne!(given, bad);
        assert!(uuid::Uuid::parse_str(&given).is_ok(), "{given}");
    }
    app.stop().await;
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let (mut settings, dir) = test_settings(BackendSet::Embedded).await;
    settings.cors_origins = vec!["https://app.example".into()];
    let app = TestApp::spawn_with(BackendSet::Embedded, settings, dir).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://app.example").await.expect("send");
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example")
    );
    let denied = preflight("https://evil.example").await.expect("send");
    assert!(!denied.headers().contains_key("access-control-allow-origin"));
    app.stop().await;
}

#[tokio::test]
async fn the_binary_refuses_a_bad_setting_by_name() {
    let out = tokio::process::Command::new(service_binary())
        .env("MEDIA_LISTEN", "not-an-address")
        .env(
            "MEDIA_DATA_DIR",
            tempfile::tempdir().expect("tempdir").path(),
        )
        .output()
        .await
        .expect("run media-api");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MEDIA_LISTEN"), "{stderr}");
}

#[tokio::test]
async fn token_subcommand_mints_what_serve_accepts_and_sigterm_drains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let bin = service_binary();
    let env = |cmd: &mut tokio::process::Command| {
        cmd.env("MEDIA_DATA_DIR", dir.path())
            .env("MEDIA_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("MEDIA_DATABASE_URL")
            .env_remove("MEDIA_REDIS_URL")
            .env_remove("MEDIA_BLOB_STORE")
            .env_remove("MEDIA_JWT_SECRET");
    };
    let mut token_cmd = tokio::process::Command::new(&bin);
    token_cmd.args(["token", "--user", "carol", "--admin", "--ttl", "10m"]);
    env(&mut token_cmd);
    let out = token_cmd.output().await.expect("token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();

    // No subcommand means serve, on the embedded default.
    let mut serve = tokio::process::Command::new(&bin);
    env(&mut serve);
    let mut child = serve.stderr(Stdio::null()).spawn().expect("serve");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_ready(&base).await, "the service did not become ready");
    let me = client
        .get(format!("{base}/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    let body = json_of(me, 200).await;
    assert_eq!(body["user"], "carol");
    assert_eq!(body["admin"], true);

    let pid = child.id().expect("pid");
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits promptly after SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn the_data_dir_and_the_database_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let (mut settings, dir) = test_settings(BackendSet::Embedded).await;
    // A data dir the service makes itself, as on a first start.
    settings.data_dir = dir.path().join("fresh").join("data");
    let data = settings.data_dir.clone();
    let app = TestApp::spawn_with(BackendSet::Embedded, settings, dir).await;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&data), 0o700, "the data dir");
    for file in ["media.db", "jwt-secret", "url-signing-secret"] {
        assert_eq!(mode(&data.join(file)) & 0o077, 0, "{file}");
    }
    // SQLite gives its journal the database's mode.
    let wal = data.join("media.db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal) & 0o077, 0, "media.db-wal");
    }
    app.stop().await;
}
