//! The access matrix: every operation of the service's own OpenAPI document
//! (so a new route cannot be forgotten: one without a rule here fails the
//! test) called by each of eight callers — the owner of what it names, a
//! member of the conversation, a removed member, a member who joined later,
//! a stranger, no token, an expired token, an admin — and each answer
//! compared with the documented one: who may is served, a user who may not
//! learns nothing (`404`, or `403` where the document says the caller is in
//! the conversation and lacks the role), no or a bad token is `401`, a
//! non-admin on an admin route `403`.

use std::collections::BTreeSet;

use media_e2e::{BackendSet, TestApp, both_sets, json_of, say, test_settings};
use reqwest::Method;
use serde_json::{Value, json};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// alice: uploaded the media, owns the group, wrote its messages.
    Owner,
    /// bob: in the group since before the attachment.
    Member,
    /// carol: was in the group when the attachment was sent, then removed.
    Removed,
    /// dave: added after the attachment was sent.
    Late,
    /// eve: nothing to do with any of it.
    Stranger,
    /// No `Authorization`.
    Anonymous,
    /// alice's token, expired.
    Expired,
    /// An operator's admin token.
    Admin,
}

const EVERYONE: [Who; 8] = [
    Who::Owner,
    Who::Member,
    Who::Removed,
    Who::Late,
    Who::Stranger,
    Who::Anonymous,
    Who::Expired,
    Who::Admin,
];

/// Who an operation serves, as the README and the document say.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Anyone, token or not.
    Public,
    /// Any valid token.
    AnyUser,
    /// The owner of the session or media alone; everyone else `404`.
    Owner,
    /// An attachment: the conversation's members who joined before it.
    Reader,
    /// The conversation's current members.
    Member,
    /// The message's sender; other members `403`.
    Author,
    /// The group's owner (or admins); other members `403`.
    Manager,
    /// An admin token; other tokens `403`.
    Admin,
}

/// The documented answer of `rule` to `who`, `ok` when served.
fn expected(rule: Rule, who: Who, ok: u16) -> u16 {
    use Who::*;
    match (rule, who) {
        (Rule::Public, _) => ok,
        (_, Anonymous | Expired) => 401,
        (Rule::AnyUser, _) => ok,
        (Rule::Admin, Admin) => ok,
        (Rule::Admin, _) => 403,
        (Rule::Owner, Owner) => ok,
        (Rule::Reader, Owner | Member) => ok,
        (Rule::Member, Owner | Member | Late) => ok,
        (Rule::Author | Rule::Manager, Owner) => ok,
        (Rule::Author | Rule::Manager, Member | Late) => 403,
        _ => 404,
    }
}

/// One request.
struct Call {
    method: Method,
    path: String,
    json: Option<Value>,
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, String)>,
}

impl Call {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            json: None,
            body: None,
            headers: Vec::new(),
        }
    }
    fn json(mut self, body: Value) -> Self {
        self.json = Some(body);
        self
    }
    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn tus(self) -> Self {
        self.header("tus-resumable", "1.0.0")
    }
}

/// What the callers act on.
struct World {
    /// The group: alice (owner), bob, dave (late); carol removed.
    group: String,
    /// alice's message with the attachment, before dave joined.
    attached_seq: u64,
    /// alice's message after dave joined.
    later_seq: u64,
    /// The attachment of alice's message before dave joined.
    attachment: String,
    /// The content of alice's own media, and of another image of hers.
    content: String,
    second: String,
    /// Another content of alice's, for blocking and unblocking.
    blockable: String,
    /// alice's session with a chunk received, and its first chunk.
    receiving: String,
    chunk: Vec<u8>,
    /// alice's completed session.
    completed: String,
    /// alice's tus upload.
    tus: String,
    /// A batch, and a job.
    batch: String,
    job: String,
    /// A file of the web client.
    asset: String,
    /// A download URL's path and query, as the service signed it.
    signed: String,
}

struct Matrix<'a> {
    app: &'a TestApp,
    world: World,
    /// A counter for names made per call.
    made: std::cell::Cell<u32>,
}

impl Matrix<'_> {
    fn token(&self, who: Who) -> Option<String> {
        let app = self.app;
        match who {
            Who::Owner => Some(app.token("alice")),
            Who::Member => Some(app.token("bob")),
            Who::Removed => Some(app.token("carol")),
            Who::Late => Some(app.token("dave")),
            Who::Stranger => Some(app.token("eve")),
            Who::Anonymous => None,
            Who::Expired => Some(app.token_expiring("alice", -60)),
            Who::Admin => Some(app.admin_token()),
        }
    }

    async fn send(&self, who: Who, call: Call) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .request(call.method, self.app.url(&call.path));
        if let Some(token) = self.token(who) {
            request = request.bearer_auth(token);
        }
        for (name, value) in call.headers {
            request = request.header(name, value);
        }
        if let Some(json) = call.json {
            request = request.json(&json);
        }
        if let Some(body) = call.body {
            request = request.body(body);
        }
        request.send().await.expect("an answer")
    }

    /// A name not used before.
    fn fresh(&self, prefix: &str) -> String {
        self.made.set(self.made.get() + 1);
        format!("{prefix}{}", self.made.get())
    }

    /// A new session of alice's; its id.
    async fn alices_session(&self) -> String {
        let session = self.app.user("alice").open("s.bin", 100).await;
        session["upload_id"].as_str().expect("id").to_owned()
    }

    /// A new tus upload of alice's, 10 bytes long; its id.
    async fn alices_tus(&self) -> String {
        let r = self
            .send(
                Who::Owner,
                Call::new(Method::POST, "/v1/tus/")
                    .tus()
                    .header("upload-length", "10"),
            )
            .await;
        assert_eq!(r.status(), 201);
        let location = media_e2e::header(&r, "location");
        location.rsplit('/').next().expect("id").to_owned()
    }

    /// A new member of the group, added by alice; their name.
    async fn new_member(&self) -> String {
        let user = self.fresh("member");
        let path = format!("/v1/conversations/{}/members", self.world.group);
        let r = self
            .send(
                Who::Owner,
                Call::new(Method::POST, path).json(json!({ "user": user })),
            )
            .await;
        assert_eq!(r.status(), 200);
        user
    }

    /// The rule, the status when served, and the call, for `op` (made
    /// afresh for each caller where a call ends what it names); `None` for
    /// an operation the matrix has no rule for.
    async fn cell(&self, op: &str) -> Option<(Rule, u16, Call)> {
        use Method as M;
        let w = &self.world;
        let group = format!("/v1/conversations/{}", w.group);
        let client_id = uuid::Uuid::now_v7().to_string();
        Some(match op {
            "GET /" => (Rule::Public, 200, Call::new(M::GET, "/")),
            "GET /assets/{file}" => (
                Rule::Public,
                200,
                Call::new(M::GET, format!("/assets/{}", w.asset)),
            ),
            "GET /blobs/{key}" => {
                // The filesystem store's download URLs; on S3 they are the
                // store's own, and the route answers 404 to everyone.
                let ok = if w.signed.contains('?') { 200 } else { 404 };
                (Rule::Public, ok, Call::new(M::GET, &w.signed))
            }
            "POST /dev/sign-in" => (
                Rule::Public,
                200,
                Call::new(M::POST, "/dev/sign-in").json(json!({ "user": "visitor" })),
            ),
            "GET /docs" | "GET /healthz" | "GET /openapi.json" | "GET /readyz" => {
                (Rule::Public, 200, Call::new(M::GET, &op[4..]))
            }
            "OPTIONS /v1/tus" | "OPTIONS /v1/tus/" => {
                (Rule::Public, 204, Call::new(M::OPTIONS, &op[8..]))
            }
            "OPTIONS /v1/tus/{upload_id}" => (
                Rule::Public,
                204,
                Call::new(M::OPTIONS, format!("/v1/tus/{}", w.tus)),
            ),
            "GET /metrics" => (Rule::Admin, 200, Call::new(M::GET, "/metrics")),
            "GET /v1/admin/audit"
            | "GET /v1/admin/batches"
            | "GET /v1/admin/jobs"
            | "GET /v1/admin/stats" => (Rule::Admin, 200, Call::new(M::GET, &op[4..])),
            "GET /v1/admin/batches/{batch_id}" => (
                Rule::Admin,
                200,
                Call::new(M::GET, format!("/v1/admin/batches/{}", w.batch)),
            ),
            // The batch is paced to be running still: the admin pauses it.
            "POST /v1/admin/batches/{batch_id}/{action}" => (
                Rule::Admin,
                200,
                Call::new(M::POST, format!("/v1/admin/batches/{}/pause", w.batch)),
            ),
            "GET /v1/admin/content/{blake3}" => (
                Rule::Admin,
                200,
                Call::new(M::GET, format!("/v1/admin/content/{}", w.content)),
            ),
            "POST /v1/admin/content/{blake3}/block" => (
                Rule::Admin,
                200,
                Call::new(M::POST, format!("/v1/admin/content/{}/block", w.blockable))
                    .json(json!({ "reason": "the access matrix" })),
            ),
            "DELETE /v1/admin/content/{blake3}/block" => (
                Rule::Admin,
                200,
                Call::new(
                    M::DELETE,
                    format!("/v1/admin/content/{}/block", w.blockable),
                ),
            ),
            "POST /v1/admin/fsck" => (
                Rule::Admin,
                202,
                Call::new(M::POST, "/v1/admin/fsck").json(json!({ "repair": false })),
            ),
            "POST /v1/admin/jobs/{job_id}/retry" => (
                Rule::Admin,
                202,
                Call::new(M::POST, format!("/v1/admin/jobs/{}/retry", w.job)),
            ),
            "POST /v1/admin/reprocess" => (
                Rule::Admin,
                200,
                Call::new(M::POST, "/v1/admin/reprocess")
                    .json(json!({ "selector": { "blake3": [w.content] }, "dry_run": true })),
            ),
            "POST /v1/admin/users/{user}/erase" => (
                Rule::Admin,
                200,
                Call::new(
                    M::POST,
                    format!("/v1/admin/users/{}/erase", self.fresh("nobody")),
                ),
            ),
            "GET /v1/me" | "GET /v1/conversations" | "GET /v1/media" | "GET /v1/sync" => {
                (Rule::AnyUser, 200, Call::new(M::GET, &op[4..]))
            }
            "POST /v1/conversations" => (
                Rule::AnyUser,
                201,
                Call::new(M::POST, "/v1/conversations").json(
                    json!({ "kind": "group", "title": "t", "members": [self.fresh("friend")] }),
                ),
            ),
            "POST /v1/media" => (
                Rule::AnyUser,
                201,
                Call::new(M::POST, "/v1/media?file_name=n.bin").body(self.fresh("bytes").into()),
            ),
            "POST /v1/uploads" => (
                Rule::AnyUser,
                201,
                Call::new(M::POST, "/v1/uploads").json(json!({ "file_name": "f", "size": 10 })),
            ),
            "POST /v1/tus" | "POST /v1/tus/" => (
                Rule::AnyUser,
                201,
                Call::new(M::POST, &op[5..])
                    .tus()
                    .header("upload-length", "10"),
            ),
            "GET /v1/realtime" => (
                Rule::AnyUser,
                101,
                Call::new(M::GET, "/v1/realtime")
                    .header("connection", "upgrade")
                    .header("upgrade", "websocket")
                    .header("sec-websocket-version", "13")
                    .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ),
            "POST /v1/messages/forward" => (
                Rule::Reader,
                201,
                Call::new(M::POST, "/v1/messages/forward").json(json!({
                    "from": { "conversation_id": w.group, "seq": w.attached_seq },
                    "to": [w.group],
                    "client_message_id": client_id,
                })),
            ),
            "GET /v1/uploads/{upload_id}" => (
                Rule::Owner,
                200,
                Call::new(M::GET, format!("/v1/uploads/{}", w.receiving)),
            ),
            "DELETE /v1/uploads/{upload_id}" => (
                Rule::Owner,
                204,
                Call::new(
                    M::DELETE,
                    format!("/v1/uploads/{}", self.alices_session().await),
                ),
            ),
            "PUT /v1/uploads/{upload_id}/chunks/{n}" => (
                Rule::Owner,
                200,
                Call::new(M::PUT, format!("/v1/uploads/{}/chunks/1", w.receiving))
                    .body(w.chunk.clone()),
            ),
            "POST /v1/uploads/{upload_id}/complete" => (
                Rule::Owner,
                200,
                Call::new(M::POST, format!("/v1/uploads/{}/complete", w.completed)),
            ),
            "GET /v1/uploads/{upload_id}/events" => (
                Rule::Owner,
                200,
                Call::new(M::GET, format!("/v1/uploads/{}/events", w.completed)),
            ),
            "HEAD /v1/tus/{upload_id}" => (
                Rule::Owner,
                200,
                Call::new(M::HEAD, format!("/v1/tus/{}", w.tus)).tus(),
            ),
            "PATCH /v1/tus/{upload_id}" => (
                Rule::Owner,
                204,
                Call::new(M::PATCH, format!("/v1/tus/{}", self.alices_tus().await))
                    .tus()
                    .header("upload-offset", "0")
                    .header("content-type", "application/offset+octet-stream")
                    .body(b"0123456789".to_vec()),
            ),
            "DELETE /v1/tus/{upload_id}" => (
                Rule::Owner,
                204,
                Call::new(M::DELETE, format!("/v1/tus/{}", self.alices_tus().await)).tus(),
            ),
            "DELETE /v1/media/{media_id}" => {
                let media = self.alices_media().await;
                (
                    Rule::Owner,
                    204,
                    Call::new(M::DELETE, format!("/v1/media/{media}")),
                )
            }
            "GET /v1/media/{media_id}" => (
                Rule::Reader,
                200,
                Call::new(M::GET, format!("/v1/media/{}", w.attachment)),
            ),
            "GET /v1/media/{media_id}/content" => (
                Rule::Reader,
                302,
                Call::new(M::GET, format!("/v1/media/{}/content", w.attachment)),
            ),
            "GET /v1/conversations/{id}" => (Rule::Member, 200, Call::new(M::GET, group)),
            "GET /v1/conversations/{id}/messages" => (
                Rule::Member,
                200,
                Call::new(M::GET, format!("{group}/messages")),
            ),
            "POST /v1/conversations/{id}/messages" => (
                Rule::Member,
                201,
                Call::new(M::POST, format!("{group}/messages"))
                    .json(json!({ "client_message_id": client_id, "text": "hi" })),
            ),
            "POST /v1/conversations/{id}/receipts" => (
                Rule::Member,
                200,
                Call::new(M::POST, format!("{group}/receipts"))
                    .json(json!({ "read_seq": w.later_seq })),
            ),
            "GET /v1/conversations/{id}/messages/{seq}/receipts" => (
                Rule::Author,
                200,
                Call::new(M::GET, format!("{group}/messages/{}/receipts", w.later_seq)),
            ),
            "PATCH /v1/conversations/{id}/messages/{seq}" => {
                let seq = self.alices_message().await;
                (
                    Rule::Author,
                    200,
                    Call::new(M::PATCH, format!("{group}/messages/{seq}"))
                        .json(json!({ "text": "edited" })),
                )
            }
            "DELETE /v1/conversations/{id}/messages/{seq}" => {
                let seq = self.alices_message().await;
                (
                    Rule::Author,
                    200,
                    Call::new(M::DELETE, format!("{group}/messages/{seq}")),
                )
            }
            "POST /v1/conversations/{id}/members" => (
                Rule::Manager,
                200,
                Call::new(M::POST, format!("{group}/members"))
                    .json(json!({ "user": self.fresh("invitee") })),
            ),
            "PATCH /v1/conversations/{id}/members/{user}" => {
                let member = self.new_member().await;
                (
                    Rule::Manager,
                    200,
                    Call::new(M::PATCH, format!("{group}/members/{member}"))
                        .json(json!({ "role": "admin" })),
                )
            }
            "DELETE /v1/conversations/{id}/members/{user}" => {
                let member = self.new_member().await;
                (
                    Rule::Manager,
                    200,
                    Call::new(M::DELETE, format!("{group}/members/{member}")),
                )
            }
            _ => return None,
        })
    }

    /// A new message of alice's in the group; its seq.
    async fn alices_message(&self) -> u64 {
        let message = say(&self.app.user("alice"), &self.world.group, "mine").await;
        message["seq"].as_u64().expect("seq")
    }

    /// A new media item of alice's; its id.
    async fn alices_media(&self) -> String {
        let done = self
            .app
            .user("alice")
            .upload("d.bin", self.fresh("doomed").as_bytes())
            .await;
        done["media_id"].as_str().expect("id").to_owned()
    }

    /// A reprocessing batch paced to still be running (its second job an
    /// hour after its first); its id.
    async fn batch(&self) -> String {
        let r = self
            .send(
                Who::Admin,
                Call::new(Method::POST, "/v1/admin/reprocess").json(json!({
                    "selector": { "blake3": [self.world.content, self.world.second] },
                    "rate": 0.001,
                })),
            )
            .await;
        json_of(r, 202).await["batch_id"]
            .as_str()
            .expect("batch")
            .to_owned()
    }
}

/// alice's media processed (its job done).
async fn processed(app: &TestApp, media: &str) {
    let alice = app.user("alice");
    let path = format!("/v1/media/{media}");
    let done = media_e2e::eventually(std::time::Duration::from_secs(60), || async {
        json_of(alice.get(&path).await, 200).await["status"] != "processing"
    })
    .await;
    assert!(done, "processing did not end");
}

async fn world(app: &TestApp) -> World {
    let alice = app.user("alice");
    let png = media_e2e::test_image(image::ImageFormat::Png, 64, 48, 1);
    let own = alice.upload("a.png", &png).await;
    let media = own["media_id"].as_str().expect("media").to_owned();
    let content = own["blake3"].as_str().expect("blake3").to_owned();
    let second = alice
        .upload(
            "c.png",
            &media_e2e::test_image(image::ImageFormat::Png, 32, 32, 2),
        )
        .await;
    // A job that ends dead (the decoder refuses the file), to retry.
    let dead = alice
        .upload("dead.jpg", &crate::processing::truncated_jpeg())
        .await;
    let blockable = alice.upload("b.bin", b"to be blocked").await["blake3"]
        .as_str()
        .expect("blake3")
        .to_owned();
    let group = media_e2e::group(&alice, &["bob", "carol"]).await;
    let members = format!("/v1/conversations/{group}/members");
    let sent = json_of(
        alice
            .send_json(
                Method::POST,
                &format!("/v1/conversations/{group}/messages"),
                &json!({
                    "client_message_id": uuid::Uuid::now_v7().to_string(),
                    "text": "look",
                    "attachments": [{ "media_id": media }],
                }),
            )
            .await,
        201,
    )
    .await;
    let attached_seq = sent["seq"].as_u64().expect("seq");
    let attachment = sent["attachments"][0]["media_id"]
        .as_str()
        .expect("attachment")
        .to_owned();
    json_of(alice.delete(&format!("{members}/carol")).await, 200).await;
    json_of(
        alice
            .send_json(Method::POST, &members, &json!({ "user": "dave" }))
            .await,
        200,
    )
    .await;
    let later_seq = say(&alice, &group, "later").await["seq"]
        .as_u64()
        .expect("seq");
    let chunk = b"0123456789".repeat(10);
    let receiving = alice.open("r.bin", chunk.len()).await["upload_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let completed = alice.open("c.bin", 7).await["upload_id"]
        .as_str()
        .expect("id")
        .to_owned();
    alice
        .send_chunks(&completed, b"7 bytes", 1 << 20, &[1], 1)
        .await;
    json_of(alice.complete(&completed).await, 200).await;
    processed(app, &media).await;
    processed(app, dead["media_id"].as_str().expect("media")).await;
    processed(app, second["media_id"].as_str().expect("media")).await;
    let second = second["blake3"].as_str().expect("blake3").to_owned();

    let matrix = Matrix {
        app,
        world: World {
            group,
            attached_seq,
            later_seq,
            attachment,
            content,
            second,
            blockable,
            receiving,
            chunk,
            completed,
            tus: String::new(),
            batch: String::new(),
            job: String::new(),
            asset: String::new(),
            signed: String::new(),
        },
        made: std::cell::Cell::new(0),
    };
    let tus = matrix.alices_tus().await;
    let batch = matrix.batch().await;
    let jobs = matrix
        .send(
            Who::Admin,
            Call::new(Method::GET, "/v1/admin/jobs?state=dead"),
        )
        .await;
    let job = json_of(jobs, 200).await["items"][0]["job_id"]
        .as_str()
        .expect("a done job")
        .to_owned();
    let page = matrix
        .send(Who::Anonymous, Call::new(Method::GET, "/"))
        .await
        .text()
        .await
        .expect("page");
    let asset = page
        .split("/assets/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page names its assets")
        .to_owned();
    let content_url = matrix
        .send(
            Who::Owner,
            Call::new(Method::GET, format!("/v1/media/{media}/content")),
        )
        .await;
    let location = media_e2e::header(&content_url, "location");
    let signed = match location.find("/blobs/") {
        Some(at) => location[at..].to_owned(),
        // The S3 store signs its own URLs; the service's `/blobs/` route
        // serves the filesystem store's, and answers 404 here.
        None => "/blobs/none".to_owned(),
    };
    World {
        tus,
        batch,
        job,
        asset,
        signed,
        ..matrix.world
    }
}

/// The problem codes `doc` lists for `op` answering `status`.
fn documented_codes(doc: &Value, op: &str, status: u16) -> Option<Vec<String>> {
    let (method, path) = op.split_once(' ').expect("op");
    let response = &doc["paths"][path][method.to_lowercase()]["responses"][status.to_string()];
    if response.is_null() {
        return None;
    }
    Some(
        response
            .pointer("/content/application~1problem+json/schema/allOf/1/properties/code/enum")
            .and_then(Value::as_array)
            .map(|codes| {
                codes
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

both_sets!(every_route_answers_each_caller_as_documented);
async fn every_route_answers_each_caller_as_documented(set: BackendSet) {
    let (mut settings, dir) = test_settings(set).await;
    settings.dev_sign_in = Some(true);
    // alice opens a session or two for each cell that ends one.
    settings.quotas.open_uploads = 1000;
    let app = TestApp::spawn_with(set, settings, dir).await;
    let doc = crate::openapi::document(&app.client, &app.url("")).await;
    let matrix = Matrix {
        app: &app,
        world: world(&app).await,
        made: std::cell::Cell::new(0),
    };
    let ops: BTreeSet<String> = crate::openapi::described(&doc)
        .into_iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    let (mut wrong, mut cells) = (Vec::new(), 0);
    for op in &ops {
        for who in EVERYONE {
            let Some((rule, ok, call)) = matrix.cell(op).await else {
                wrong.push(format!("{op}: no rule in the access matrix (a new route?)"));
                break;
            };
            let head = call.method == Method::HEAD;
            let r = matrix.send(who, call).await;
            let status = r.status().as_u16();
            let want = expected(rule, who, ok);
            cells += 1;
            if status != want {
                let body = r.text().await.unwrap_or_default();
                wrong.push(format!(
                    "{op} by {who:?}: {status}, documented {want} ({rule:?}): {}",
                    body.chars().take(160).collect::<String>()
                ));
                continue;
            }
            if status < 400 || head {
                continue;
            }
            // A refusal is a problem with a code the document lists for it.
            let content_type = media_e2e::header(&r, "content-type");
            let problem: Value = r.json().await.unwrap_or(Value::Null);
            let code = problem["code"].as_str().unwrap_or("").to_owned();
            match documented_codes(&doc, op, status) {
                None => wrong.push(format!("{op} by {who:?}: {status} is not documented")),
                Some(codes)
                    if !codes.contains(&code) || content_type != "application/problem+json" =>
                {
                    wrong.push(format!(
                        "{op} by {who:?}: {status} {content_type} code {code:?}, documented {codes:?}"
                    ));
                }
                Some(_) => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{set:?}: {} of {cells} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(cells, ops.len() * EVERYONE.len(), "{set:?}: every cell");
    eprintln!(
        "{set:?}: {} operations × {} callers, every answer the documented one",
        ops.len(),
        EVERYONE.len()
    );
    app.stop().await;
}
