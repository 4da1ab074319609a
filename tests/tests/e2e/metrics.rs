//! The service's own metrics count what happened in that service: each
//! check runs against a service process of its own (the in-process test
//! apps share one process-wide recorder), with exact counts where the
//! count is known, so that each can fail.

use std::time::Duration;

use media_e2e::both_sets;
use media_e2e::metric_in;
use media_e2e::{
    BackendSet, ServiceProcess, eventually, free_port, json_of, test_image, test_settings,
};
use serde_json::{Value, json};

both_sets!(each_process_counts_its_own_events);
async fn each_process_counts_its_own_events(set: BackendSet) {
    let (settings, _dir) = test_settings(set).await;
    let service = ServiceProcess::start_with(
        &settings,
        free_port(),
        "metrics-test-secret-long-enough-0123456789",
        &[
            ("MEDIA_GC_GRACE", "1s"),
            ("MEDIA_GC_INTERVAL", "200ms"),
            ("MEDIA_JOBS__SERVE_WORKERS", "1"),
            ("MEDIA_JOBS__POLL_INTERVAL", "200ms"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let token = service.token("alice");
    let post = |name: &'static str, body: Vec<u8>| {
        let (client, token, base) = (client.clone(), token.clone(), service.base.clone());
        async move {
            let r = client
                .post(format!("{base}/v1/media?file_name={name}"))
                .bearer_auth(&token)
                .body(body)
                .send()
                .await
                .expect("post");
            json_of(r, 201).await
        }
    };
    let status = |id: String| {
        let (client, token, base) = (client.clone(), token.clone(), service.base.clone());
        async move {
            let r = client
                .get(format!("{base}/v1/media/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("get");
            json_of(r, 200).await["status"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        }
    };
    let m = |name: &'static str, labels: &'static [&'static str]| service.metric(name, labels);
    assert_eq!(
        m("uploads_completed_total", &[]).await,
        0.0,
        "{set:?}: a fresh process"
    );

    // One processed image: one job done, timed once.
    let image = test_image(image::ImageFormat::Png, 320, 240, 1);
    let good = post("a.png", image.clone()).await;
    let good_id = good["media_id"].as_str().expect("id").to_owned();
    assert!(
        eventually(Duration::from_secs(60), || async {
            status(good_id.clone()).await == "ready"
        })
        .await
    );
    assert_eq!(
        m("uploads_completed_total", &["kind=\"single\""]).await,
        1.0
    );
    assert_eq!(m("job_duration_seconds_count", &[]).await, 1.0, "{set:?}");
    assert_eq!(m("job_latency_seconds_count", &[]).await, 1.0, "{set:?}");

    // One refusal by the decoder, counted by its reason.
    let mut truncated = image.clone();
    truncated.truncate(image.len() / 2);
    let bad = post("b.png", truncated).await;
    let bad_id = bad["media_id"].as_str().expect("id").to_owned();
    assert!(
        eventually(Duration::from_secs(60), || async {
            status(bad_id.clone()).await == "failed"
        })
        .await
    );
    assert_eq!(
        m("job_failures_total", &["reason=\"refused\""]).await,
        1.0,
        "{set:?}"
    );
    assert_eq!(m("job_failures_total", &[]).await, 1.0, "{set:?}");

    // One instant dedup by the owner.
    let r = client
        .post(format!("{}/v1/uploads", service.base))
        .bearer_auth(&token)
        .json(&json!({
            "file_name": "again.png",
            "size": image.len(),
            "blake3": blake3::hash(&image).to_hex().as_str(),
        }))
        .send()
        .await
        .expect("dedup");
    let again: Value = json_of(r, 200).await;
    assert_eq!(again["deduplicated"], true);
    assert_eq!(
        m("dedup_hits_total", &["kind=\"instant\""]).await,
        1.0,
        "{set:?}"
    );

    // Every reference to the image dropped: the GC deletes one blob.
    for id in [&good_id, again["media_id"].as_str().expect("id")] {
        let r = client
            .delete(format!("{}/v1/media/{id}", service.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 204);
    }
    assert!(
        eventually(Duration::from_secs(30), || async {
            m("gc_blobs_deleted_total", &[]).await >= 1.0
        })
        .await,
        "{set:?}: the GC did not count its deletion"
    );
    assert_eq!(m("gc_blobs_deleted_total", &[]).await, 1.0, "{set:?}");
    assert_eq!(m("gc_bytes_deleted_total", &[]).await, image.len() as f64);
    service.kill().await;
}

#[tokio::test]
async fn invented_methods_make_no_new_time_series() {
    let (settings, _dir) = test_settings(BackendSet::Embedded).await;
    let service = ServiceProcess::start(
        &settings,
        free_port(),
        "metrics-method-secret-long-enough-0123456789",
    )
    .await;
    let client = reqwest::Client::new();
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).expect("method");
        let r = client
            .request(method, format!("{}/v1/me", service.base))
            .send()
            .await
            .expect("send");
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let text = service.metrics_text().await;
    assert!(!text.contains("BREW"), "an invented method became a label");
    assert_eq!(
        metric_in(&text, "http_requests_total", &["method=\"other\""]),
        20.0,
        "{text}"
    );
    service.kill().await;
}

#[tokio::test]
async fn a_job_out_of_time_fails_once_and_is_not_retried() {
    let (settings, _dir) = test_settings(BackendSet::Embedded).await;
    let service = ServiceProcess::start_with(
        &settings,
        free_port(),
        "metrics-timeout-secret-long-enough-0123456789",
        &[
            ("MEDIA_JOBS__SERVE_WORKERS", "1"),
            ("MEDIA_JOBS__POLL_INTERVAL", "100ms"),
            // No decoder starts and finishes in this: every job runs out.
            ("MEDIA_JOBS__TIMEOUT", "5ms"),
            ("MEDIA_JOBS__MAX_ATTEMPTS", "3"),
            ("MEDIA_JOBS__BACKOFF", "50ms"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let token = service.token("alice");
    let png = test_image(image::ImageFormat::Png, 640, 480, 9);
    let r = client
        .post(format!("{}/v1/media?file_name=slow.png", service.base))
        .bearer_auth(&token)
        .body(png)
        .send()
        .await
        .expect("post");
    let id = json_of(r, 201).await["media_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("{}/v1/media/{id}", service.base);
    let failed = eventually(Duration::from_secs(30), || async {
        let r = client
            .get(&path)
            .bearer_auth(&token)
            .send()
            .await
            .expect("get");
        json_of(r, 200).await["status"] == "failed"
    })
    .await;
    assert!(failed, "the job did not fail");
    let r = client
        .get(&path)
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    let media = json_of(r, 200).await;
    assert!(
        media["failure_reason"]
            .as_str()
            .unwrap_or("")
            .contains("longer than"),
        "{media}"
    );
    // Give a retry, were there one, the time to run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        service
            .metric("job_failures_total", &["reason=\"timeout\""])
            .await,
        1.0,
        "a job out of time ran again"
    );
    service.kill().await;
}
