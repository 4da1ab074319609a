//! The workers' life: worker processes stopped and killed mid-job, the
//! upload's event stream to the end, priorities, wake-ups, and `serve` run
//! by hand on the real backends.

use super::av::{find_variant, movie, top_level_boxes};
use super::*;
use media_api::metadata_store::jobs::JobState;

/// `media-api worker` as its own process, one worker, on `settings`' backends.
fn worker_process(settings: &media_api::Settings) -> tokio::process::Child {
    let mut cmd = media_e2e::service_command(settings, "worker-test-secret-long-enough-0123456789");
    cmd.arg("worker")
        .env("MEDIA_JOBS__WORKERS", "1")
        .env("MEDIA_JOBS__LEASE", "3s")
        .env("MEDIA_JOBS__POLL_INTERVAL", "200ms");
    // No MEDIA_JOBS__RENDER_PROGRAM: the worker finds `media-render` beside
    // its own binary, as an installed service does.
    cmd.spawn().expect("start a worker")
}

/// The API alone in this process (the work happens in worker processes),
/// and the movie uploaded and claimed by a worker process.
async fn movie_claimed(
    set: BackendSet,
) -> (TestApp, media_api::Settings, tokio::process::Child, String) {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(0);
    let app = TestApp::spawn_with(set, settings.clone(), dir).await;
    let worker = worker_process(&settings);
    let bytes = std::fs::read(movie()).expect("movie");
    let done = app.user("alice").upload("movie.mp4", &bytes).await;
    let id = done["media_id"].as_str().expect("id").to_owned();
    assert!(
        one_job_running(&app).await,
        "{set:?}: the worker never claimed the job"
    );
    (app, settings, worker, id)
}

/// Waits until a worker has claimed the one job (30 s at most).
async fn one_job_running(app: &TestApp) -> bool {
    let jobs = app.state.backends.jobs.clone();
    eventually(Duration::from_secs(30), || async {
        jobs.counts()
            .await
            .expect("counts")
            .iter()
            .any(|(s, n)| *s == JobState::Running && *n == 1)
    })
    .await
}

/// The child processes of `pid` (the render child a worker runs for a job).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Every process below `pid` (the render child runs inside its sandbox,
/// a few processes down).
pub(super) fn descendants_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = children_of(pid);
    while let Some(p) = next.pop() {
        next.extend(children_of(p));
        found.push(p);
    }
    found
}

/// Whether `pid` runs `media-render` (not the sandbox or `prlimit` that start it).
fn is_render(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        c.split('\0')
            .next()
            .is_some_and(|exe| exe.ends_with("media-render"))
    })
}

/// Waits until the worker `pid` is running its render child, and returns it.
async fn rendering(pid: u32) -> u32 {
    let mut child = None;
    let found = eventually(Duration::from_secs(30), || {
        let now = descendants_of(pid).into_iter().find(|c| is_render(*c));
        child = now;
        async move { now.is_some() }
    })
    .await;
    assert!(found, "the worker never started its render child");
    child.expect("render child")
}

both_sets!(a_worker_stopped_mid_transcode_finishes_its_job_before_exiting);
async fn a_worker_stopped_mid_transcode_finishes_its_job_before_exiting(set: BackendSet) {
    let (app, _settings, mut worker, id) = movie_claimed(set).await;
    let alice = app.user("alice");
    let pid = worker.id().expect("pid");
    let render = rendering(pid).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let term = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill");
    assert!(term.success());
    // The transcode was in flight when the signal arrived: its render child
    // was still running after it.
    assert!(
        descendants_of(pid).contains(&render),
        "{set:?}: the render child had finished before SIGTERM; the test proves nothing"
    );
    // The grace period (30 s) covers the running transcode.
    let status = tokio::time::timeout(Duration::from_secs(40), worker.wait())
        .await
        .expect("the worker exits within its grace period")
        .expect("wait");
    assert!(status.success(), "{set:?}: exit status {status}");
    let media = json_of(alice.get(&format!("/v1/media/{id}")).await, 200).await;
    assert_eq!(
        media["status"], "ready",
        "{set:?}: the running job was not finished: {media}"
    );
    app.stop().await;
}

both_sets!(a_worker_killed_mid_transcode_is_replaced_and_the_variant_made_once);
async fn a_worker_killed_mid_transcode_is_replaced_and_the_variant_made_once(set: BackendSet) {
    let (app, settings, mut first, id) = movie_claimed(set).await;
    let alice = app.user("alice");
    let jobs = app.state.backends.jobs.clone();
    // Into the transcode (a 10 s 1080p movie takes several seconds), then SIGKILL.
    let pid = first.id().expect("pid");
    let render = rendering(pid).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        descendants_of(pid).contains(&render),
        "{set:?}: the render child had finished before SIGKILL; the test proves nothing"
    );
    first.kill().await.expect("SIGKILL the worker");
    // Its sandboxed child dies with it: no orphan decodes on.
    let gone = eventually(Duration::from_secs(5), || async move {
        std::fs::read_to_string(format!("/proc/{render}/stat"))
            .map_or(true, |stat| stat.contains(") Z "))
    })
    .await;
    assert!(
        gone,
        "{set:?}: the render child outlived its SIGKILLed worker"
    );
    let media = json_of(alice.get(&format!("/v1/media/{id}")).await, 200).await;
    assert_eq!(
        media["status"], "processing",
        "{set:?}: finished before the kill: {media}"
    );

    let mut second = worker_process(&settings);
    let media = settled(&alice, &id).await;
    assert_eq!(media["status"], "ready", "{set:?}: {media}");
    let names: Vec<&str> = media["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["h264_720p", "poster", "thumb"],
        "{set:?}: each variant once"
    );
    let counts = jobs.counts().await.expect("counts");
    assert_eq!(counts, vec![(JobState::Done, 1)], "{set:?}: one job, done");
    let (_, mp4) = variant_of(&alice, &id, "h264_720p").await;
    assert!(top_level_boxes(&mp4).iter().any(|(_, _, k)| k == "mdat"));
    second.kill().await.expect("stop the second worker");
    app.stop().await;
}

both_sets!(the_upload_event_stream_ends_with_the_processed_media);
async fn the_upload_event_stream_ends_with_the_processed_media(set: BackendSet) {
    let app = spawn(set).await;
    let alice = app.user("alice");
    let png = good_png(3);
    let session = alice.open("live.png", png.len()).await;
    let id = session["upload_id"].as_str().expect("id").to_owned();
    let stream = alice.get(&format!("/v1/uploads/{id}/events")).await;
    assert_eq!(stream.status(), 200);
    // The stream ends by itself after `processed`.
    let reader = media_e2e::collect_events(stream, Duration::from_secs(60), None);
    let chunk = session["chunk_size"].as_u64().expect("chunk size") as usize;
    let total = session["total_chunks"].as_u64().expect("total") as usize;
    let order: Vec<usize> = (1..=total).collect();
    alice.send_chunks(&id, &png, chunk, &order, 2).await;
    let done = json_of(alice.complete(&id).await, 200).await;
    let text = reader.await.expect("reader");
    let completed = text
        .find("event: completed")
        .unwrap_or_else(|| panic!("{set:?}: {text}"));
    let processed = text
        .find("event: processed")
        .unwrap_or_else(|| panic!("{set:?}: {text}"));
    assert!(completed < processed, "{set:?}: {text}");
    let last = text[processed..]
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("processed data");
    let media: Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(media["media_id"], done["media_id"]);
    assert_eq!(media["status"], "ready", "{set:?}: {media}");
    assert!(find_variant(&media, "thumb")["width"].as_u64().is_some());
    app.stop().await;
}

both_sets!(live_uploads_are_processed_before_batch_work);
async fn live_uploads_are_processed_before_batch_work(set: BackendSet) {
    use media_api::metadata_store::jobs::{BATCH_PRIORITY, LIVE_PRIORITY};
    let (mut settings, dir) = test_settings(set).await;
    // No workers: the test claims by hand to see the order.
    settings.jobs.serve_workers = Some(0);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let jobs = app.state.backends.jobs.clone();
    let first = post(&alice, "a.png", "image/png", good_png(10)).await;
    let a =
        media_api::ids::Blake3::parse(first["blake3"].as_str().expect("blake3")).expect("blake3");
    // Presets changed: an operator queues `a` again, before `b` arrives.
    jobs.reprocess(&a, BATCH_PRIORITY).await.expect("reprocess");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = post(&alice, "b.png", "image/png", good_png(11)).await;
    let mut order = Vec::new();
    while let Some(job) = jobs
        .claim("test-worker", Duration::from_secs(60), true)
        .await
        .expect("claim")
    {
        order.push((job.blake3.to_hex(), job.priority));
    }
    let b = second["blake3"].as_str().expect("blake3").to_owned();
    assert_eq!(
        order,
        vec![
            (a.to_hex(), LIVE_PRIORITY),
            (b, LIVE_PRIORITY),
            (a.to_hex(), BATCH_PRIORITY)
        ],
        "{set:?}"
    );
    app.stop().await;
}

both_sets!(idle_workers_wake_when_work_arrives_rather_than_polling);
async fn idle_workers_wake_when_work_arrives_rather_than_polling(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(1);
    // A poll interval far longer than the test: only a wake-up (NOTIFY on
    // PostgreSQL, an in-process signal on SQLite) can start the job.
    settings.jobs.poll_interval = Duration::from_secs(600);
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    // Let the worker find the queue empty and go to sleep.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = post(&alice, "woken.png", "image/png", good_png(12)).await;
    let id = done["media_id"].as_str().expect("id");
    let path = format!("/v1/media/{id}");
    let ready = eventually(Duration::from_secs(20), || async {
        json_of(alice.get(&path).await, 200).await["status"] == "ready"
    })
    .await;
    assert!(ready, "{set:?}: the idle worker was not woken");
    app.stop().await;
}

/// `media-api` started by hand on the real backends, configured only through
/// the environment as the README's command does: with no worker setting it
/// processes uploads itself; with `MEDIA_JOBS__SERVE_WORKERS=0` it says at
/// start that it runs none, and `/readyz` shows the queue nobody drains.
#[tokio::test]
async fn serve_on_the_real_backends_processes_uploads_or_says_why_not() {
    let (settings, _dir) = test_settings(BackendSet::Real).await;
    let secret = "by-hand-test-secret-long-enough-0123456789";
    let client = reqwest::Client::new();
    for serve_workers in [None, Some("0")] {
        let env: Vec<(&str, &str)> = serve_workers
            .map(|n| ("MEDIA_JOBS__SERVE_WORKERS", n))
            .into_iter()
            .collect();
        let service =
            media_e2e::ServiceProcess::start_with(&settings, media_e2e::free_port(), secret, &env)
                .await;
        let (base, token) = (service.base.clone(), service.token("newcomer"));
        let r = client
            .post(format!("{base}/v1/media?file_name=by-hand.png"))
            .bearer_auth(&token)
            .header("content-type", "image/png")
            .body(good_png(serve_workers.map_or(1, |_| 2)))
            .send()
            .await
            .expect("post");
        let media = json_of(r, 201).await;
        let path = format!(
            "{base}/v1/media/{}",
            media["media_id"].as_str().expect("id")
        );
        let status = || async {
            let r = client
                .get(&path)
                .bearer_auth(&token)
                .send()
                .await
                .expect("get");
            json_of(r, 200).await["status"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        };
        let admin = service.admin_token();
        let readyz = || async {
            let r = client
                .get(format!("{base}/readyz"))
                .bearer_auth(&admin)
                .send()
                .await;
            json_of(r.expect("readyz"), 200).await
        };
        let ready = readyz().await;
        match serve_workers {
            None => {
                assert!(
                    ready["processing"]["workers_in_process"].as_u64() > Some(0),
                    "{ready}"
                );
                assert!(
                    eventually(Duration::from_secs(60), || async {
                        status().await == "ready"
                    })
                    .await,
                    "the upload was not processed by the service started by hand"
                );
            }
            Some(_) => {
                assert_eq!(ready["processing"]["workers_in_process"], 0, "{ready}");
                assert!(
                    eventually(Duration::from_secs(10), || async {
                        service.log().contains("runs no processing workers")
                    })
                    .await,
                    "serve did not say it runs no workers: {}",
                    service.log()
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
                assert_eq!(status().await, "processing");
                let ready = readyz().await;
                assert_eq!(
                    ready["processing"]["queued"], 1,
                    "the waiting job is shown: {ready}"
                );
            }
        }
        service.kill().await;
    }
}

/// The database away for a moment mid-job: the heartbeat fails, tries again,
/// and keeps the lease, so the other worker never takes the job over and it
/// runs once. (Before, the first failed beat ended the heartbeat: the lease
/// ran out and a second worker ran the same job.)
#[tokio::test]
async fn a_failed_heartbeat_is_retried_and_the_job_runs_once() {
    use sqlx::Connection;
    let set = BackendSet::Real;
    let (mut settings, dir) = test_settings(set).await;
    settings.jobs.serve_workers = Some(2);
    settings.jobs.lease = Duration::from_secs(3);
    settings.jobs.poll_interval = Duration::from_millis(200);
    let url = {
        use secrecy::ExposeSecret;
        settings
            .database_url
            .as_ref()
            .expect("database")
            .expose_secret()
            .to_owned()
    };
    let app = TestApp::spawn_with(set, settings, dir).await;
    let alice = app.user("alice");
    let bytes = std::fs::read(movie()).expect("movie");
    let done = alice.upload("movie.mp4", &bytes).await;
    let id = done["media_id"].as_str().expect("id").to_owned();
    assert!(one_job_running(&app).await, "no worker claimed the job");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every statement on the queue fails for 1.5 s: the table is not there.
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("alter table jobs rename to jobs_away")
        .execute(&mut conn)
        .await
        .expect("rename");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query("alter table jobs_away rename to jobs")
        .execute(&mut conn)
        .await
        .expect("rename back");
    let media = settled(&alice, &id).await;
    assert_eq!(media["status"], "ready", "{media}");
    let attempts: i64 = sqlx::query_scalar("select attempts from jobs")
        .fetch_one(&mut conn)
        .await
        .expect("attempts");
    assert_eq!(attempts, 1, "the job was claimed {attempts} times");
    app.stop().await;
}

both_sets!(one_users_backlog_does_not_hold_up_another_users_first_upload);
async fn one_users_backlog_does_not_hold_up_another_users_first_upload(set: BackendSet) {
    const BACKLOG: usize = 24;
    let (mut settings, dir) = test_settings(set).await;
    // Nothing processes until everything is queued: then one worker.
    settings.jobs.serve_workers = Some(0);
    let app = TestApp::spawn_with(set, settings.clone(), dir).await;
    let (alice, bob) = (app.user("alice"), app.user("bob"));
    for i in 0..BACKLOG {
        post(&alice, "a.png", "image/png", good_png(100 + i as u8)).await;
    }
    let bobs = post(&bob, "b.png", "image/png", good_png(200)).await;
    let mut worker = worker_process(&settings);
    let media = settled(&bob, bobs["media_id"].as_str().expect("id")).await;
    assert_eq!(media["status"], "ready");
    let all_done = eventually(Duration::from_secs(120), || async {
        media_e2e::raw_column(&app, "select state from jobs")
            .await
            .iter()
            .all(|s| s == "done")
    })
    .await;
    assert!(all_done, "{set:?}: the backlog was not processed");
    let _ = worker.kill().await;
    // The order the jobs finished in: bob's first upload came after at most
    // one of alice's (rank 0 each), not after all of them.
    let order = media_e2e::raw_column(
        &app,
        "select coalesce(owner_id, '') from jobs order by updated_at, job_id",
    )
    .await;
    let position = order.iter().position(|o| o == "bob").expect("bob's job");
    assert!(
        position <= 1,
        "{set:?}: bob's job ran after {position} of alice's: {order:?}"
    );
    app.stop().await;
}
