//! The operators' API: admin-only, audited, and what it reports.

use std::time::Duration;

use media_e2e::both_sets;
use media_e2e::{BackendSet, TestApp, eventually, json_of, problem_of, random_bytes};
use reqwest::Method;
use serde_json::json;

/// Every admin route, with a request that would be valid for an admin, and
/// what the admin gets (404 for a job or content that does not exist).
const ROUTES: &[(&str, &str, u16)] = &[
    ("GET", "/v1/admin/stats", 200),
    ("GET", "/v1/admin/jobs?state=dead", 200),
    (
        "POST",
        "/v1/admin/jobs/0190e0a0-0000-7000-8000-000000000000/retry",
        404,
    ),
    ("GET", "/v1/admin/audit", 200),
    (
        "GET",
        "/v1/admin/content/af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        404,
    ),
    // (no JSON body: refused as such, once the caller is an admin)
    ("POST", "/v1/admin/reprocess", 415),
    ("POST", "/v1/admin/fsck", 415),
    (
        "POST",
        "/v1/admin/content/af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262/block",
        415,
    ),
    (
        "DELETE",
        "/v1/admin/content/af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262/block",
        200,
    ),
    ("GET", "/v1/admin/batches", 200),
    ("POST", "/v1/admin/users/nobody/erase", 200),
    (
        "GET",
        "/v1/admin/batches/0190e0a0-0000-7000-8000-000000000000",
        404,
    ),
    (
        "POST",
        "/v1/admin/batches/0190e0a0-0000-7000-8000-000000000000/pause",
        404,
    ),
];

async fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> reqwest::Response {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("call")
}

both_sets!(admin_routes_refuse_everyone_else_and_every_call_is_audited);
async fn admin_routes_refuse_everyone_else_and_every_call_is_audited(set: BackendSet) {
    let app = TestApp::spawn(set).await;
    let alice = app.user("alice");
    let admin = app.admin_token();
    for (method, path, expected) in ROUTES {
        problem_of(call(&app, method, path, None).await, 401, "token-missing").await;
        let refused = problem_of(
            call(&app, method, path, Some(&alice.token)).await,
            403,
            "admin-required",
        )
        .await;
        assert_eq!(refused["status"], 403, "{set:?} {method} {path}");
        let status = call(&app, method, path, Some(&admin))
            .await
            .status()
            .as_u16();
        assert_eq!(status, *expected, "{set:?} {method} {path} as admin");
    }
    // The log holds every one of those calls, newest first, refusals included.
    let log = json_of(
        call(&app, "GET", "/v1/admin/audit?limit=200", Some(&admin)).await,
        200,
    )
    .await;
    let items = log["items"].as_array().expect("items");
    for (method, path, expected) in ROUTES {
        for (who, status) in [("-", 401), ("alice", 403), ("operator", *expected)] {
            let found = items.iter().any(|e| {
                e["admin"] == who
                    && e["status"] == status
                    && e["action"] == format!("{method} {path}")
            });
            assert!(
                found,
                "{set:?}: no audit entry of {who} {method} {path} {status}: {log}"
            );
        }
    }
    assert!(
        items
            .first()
            .is_some_and(|e| e["at"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
    app.stop().await;
}

both_sets!(stats_count_what_is_stored_and_a_dead_job_can_be_retried);
async fn stats_count_what_is_stored_and_a_dead_job_can_be_retried(set: BackendSet) {
    let (mut settings, dir) = media_e2e::test_settings(set).await;
    settings.jobs.serve_workers = Some(1);
    settings.jobs.max_attempts = 1;
    settings.jobs.poll_interval = Duration::from_millis(200);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    let admin = app.admin_token();
    let shared = random_bytes(100_000, 1);
    let own = random_bytes(50_000, 2);
    alice.post_media("a.bin", &shared).await;
    bob.post_media("b.bin", &shared).await;
    bob.post_media("c.bin", &own).await;
    let stats = json_of(
        call(&app, "GET", "/v1/admin/stats", Some(&admin)).await,
        200,
    )
    .await;
    assert_eq!(stats["users"], 2, "{set:?}: {stats}");
    assert_eq!(stats["media"], 3, "{stats}");
    assert_eq!(stats["contents"], 2, "{stats}");
    assert_eq!(stats["logical_bytes"], 250_000, "{stats}");
    assert_eq!(stats["stored_bytes"], 150_000, "{stats}");
    assert!((stats["dedup_ratio"].as_f64().expect("ratio") - 250.0 / 150.0).abs() < 1e-9);
    assert_eq!(
        stats["by_content_type"],
        json!([{"content_type": "application/octet-stream", "contents": 2, "bytes": 150_000}])
    );

    // One content, and who holds it.
    let hash = blake3::hash(&shared).to_hex().to_string();
    let content = json_of(
        call(
            &app,
            "GET",
            &format!("/v1/admin/content/{hash}"),
            Some(&admin),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(content["size"], 100_000, "{set:?}: {content}");
    assert_eq!(
        content["media"],
        json!([{"owner": "alice", "count": 1}, {"owner": "bob", "count": 1}]),
        "{content}"
    );
    assert_eq!(content["attachments"], json!([]));
    problem_of(
        call(&app, "GET", "/v1/admin/content/not-a-hash", Some(&admin)).await,
        400,
        "invalid-blake3",
    )
    .await;

    // A file the decoder refuses: its job dies at once, with its error.
    let r = app
        .client
        .post(app.url("/v1/media?file_name=cut.jpg"))
        .bearer_auth(&alice.token)
        .header("content-type", "image/jpeg")
        .body(crate::processing::truncated_jpeg())
        .send()
        .await
        .expect("post");
    let bomb = json_of(r, 201).await;
    let dead = || async {
        json_of(
            call(&app, "GET", "/v1/admin/jobs?state=dead", Some(&admin)).await,
            200,
        )
        .await
    };
    assert!(
        eventually(Duration::from_secs(30), || async {
            dead().await["items"]
                .as_array()
                .is_some_and(|i| i.len() == 1)
        })
        .await,
        "{set:?}: no dead job"
    );
    let jobs = dead().await;
    let job = &jobs["items"][0];
    assert_eq!(job["blake3"], bomb["blake3"]);
    assert!(
        job["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{job}"
    );
    let stats = json_of(
        call(&app, "GET", "/v1/admin/stats", Some(&admin)).await,
        200,
    )
    .await;
    assert_eq!(stats["dead_jobs"], 1, "{stats}");
    // Retried: queued again, run again (and refused again: the same file).
    let id = job["job_id"].as_str().expect("id");
    let r = call(
        &app,
        "POST",
        &format!("/v1/admin/jobs/{id}/retry"),
        Some(&admin),
    )
    .await;
    assert_eq!(json_of(r, 202).await["state"], "queued");
    let ran_again = eventually(Duration::from_secs(30), || async {
        let done = json_of(
            call(&app, "GET", "/v1/admin/jobs?state=dead", Some(&admin)).await,
            200,
        )
        .await;
        done["items"][0]["updated_at"] != job["updated_at"]
    })
    .await;
    assert!(ran_again, "{set:?}: the retried job did not run again");
    problem_of(
        call(&app, "GET", "/v1/admin/jobs?state=lost", Some(&admin)).await,
        400,
        "invalid-state",
    )
    .await;
    problem_of(
        call(&app, "GET", "/v1/admin/jobs?limit=0", Some(&admin)).await,
        400,
        "invalid-limit",
    )
    .await;
    app.stop().await;
}
