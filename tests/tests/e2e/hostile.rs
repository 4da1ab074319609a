//! A hostile corpus against a service process: path traversal and junk in
//! every path parameter of every route (read from the service's own
//! OpenAPI document, so a new route is attacked too), malformed and
//! oversized headers, broken framing, malformed and oversized JSON on every
//! route that takes JSON, bad digests and chunk numbers, decompression
//! bombs. Every answer is below 500, the log holds no panic, and no row of
//! any table changes. Then malformed media (truncated, polyglot): a file
//! is a file, so it is stored, and its processing ends with a reason,
//! never a 500 or a job stuck.

use std::collections::BTreeMap;
use std::time::Duration;

use media_e2e::{BackendSet, ServiceProcess, both_sets, free_port, test_settings};
use serde_json::{Value, json};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "hostile-corpus-secret-long-enough-0123456789";

/// Every table the service writes, counted.
/// (`admin_audit` is not among them: the audit log records every call to
/// an admin route, refused ones included, which is what it is for; the test
/// checks that each of those rows says it was refused.)
const TABLES: &[&str] = &[
    "attachments",
    "batches",
    "blobs",
    "blocked_contents",
    "chat_events",
    "chat_members",
    "conversations",
    "jobs",
    "media",
    "messages",
    "tus_uploads",
    "upload_chunks",
    "uploads",
    "variants",
];

async fn counts(settings: &media_api::Settings) -> BTreeMap<&'static str, i64> {
    let mut conn = media_e2e::connect_to(settings).await;
    let mut out = BTreeMap::new();
    for table in TABLES {
        let row = sqlx::query(&format!("select count(*) as n from {table}"))
            .fetch_one(&mut conn)
            .await
            .expect(table);
        out.insert(*table, row.try_get::<i64, _>("n").expect("count"));
    }
    out
}

/// Values for a path parameter, already percent-encoded where they must be.
const HOSTILE_SEGMENTS: &[&str] = &[
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fmedia.db",
    "%00",
    "%27%3B%20drop%20table%20media%3B--",
    "%E2%80%AEgpj.exe",
    "%FF%FE",
    "-1",
    "99999999999999999999999999",
    "%F0%9F%92%A5",
    "0000000000000000000000000000000000000000000000000000000000000000",
];

/// One answer of the corpus: what was sent, and the status.
struct Answer {
    what: String,
    status: u16,
}

fn png_header(width: u32, height: u32) -> Vec<u8> {
    // Signature, then an IHDR chunk (CRC not checked by the header reader;
    // a decoder would refuse it, the header is what a bomb lies in).
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend(width.to_be_bytes());
    png.extend(height.to_be_bytes());
    png.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
    png.extend(std::iter::repeat_n(0u8, 200));
    png
}

fn jpeg_header(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = vec![0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 0x08];
    jpeg.extend(height.to_be_bytes());
    jpeg.extend(width.to_be_bytes());
    jpeg.extend([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    jpeg.extend(std::iter::repeat_n(0u8, 200));
    jpeg
}

/// A raw HTTP/1.1 exchange: what a client library would refuse to send.
async fn raw(base: &str, request: &[u8]) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    // No answer at all (the connection closed) counts as a refusal.
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(400)
}

async fn corpus(
    service: &ServiceProcess,
    token: &str,
    session: &str,
    conversation: &str,
) -> Vec<Answer> {
    let base = &service.base;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut answers = Vec::new();
    let mut note = |what: String, status: u16| answers.push(Answer { what, status });

    // 1. Every path parameter of every route, from the service's document.
    let doc = crate::openapi::document(&client, base).await;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.contains('{') {
            continue;
        }
        for (method, op) in item.as_object().expect("item") {
            let Ok(method) = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if op.get("operationId").is_none() {
                continue;
            }
            for segment in HOSTILE_SEGMENTS {
                let mut url = path.clone();
                while let (Some(open), Some(close)) = (url.find('{'), url.find('}')) {
                    url.replace_range(open..=close, segment);
                }
                let mut request = client
                    .request(method.clone(), format!("{base}{url}"))
                    .bearer_auth(token)
                    .header("tus-resumable", "1.0.0");
                if matches!(method.as_str(), "POST" | "PATCH" | "PUT") {
                    request = if url.contains("/chunks/") || url.contains("/tus/") {
                        request
                            .header("content-type", "application/offset+octet-stream")
                            .header("upload-offset", "0")
                            .body(vec![b'x'; 16])
                    } else {
                        request.json(&json!({ "user": segment, "text": segment, "role": "owner" }))
                    };
                }
                let status = request
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(599);
                note(format!("{method} {url}"), status);
            }
        }
    }

    // 2. Headers.
    let me = format!("{base}/v1/me");
    let headers: Vec<(&str, Vec<u8>)> = vec![
        ("authorization", format!("Bearer {}", "A".repeat(20_000)).into_bytes()),
        ("authorization", b"Basic YWxpY2U6cGFzc3dvcmQ=".to_vec()),
        ("authorization", b"Bearer \xff\xfe\xfd".to_vec()),
        ("authorization", b"Bearer a.b.c".to_vec()),
        ("authorization", format!("Bearer {token}x").into_bytes()),
        ("authorization", b"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiIsInNjb3BlIjoiYWRtaW4iLCJleHAiOjk5OTk5OTk5OTl9.".to_vec()),
        ("x-request-id", "r".repeat(10_000).into_bytes()),
        ("x-request-id", b"\x01\x02evil\r".to_vec()),
    ];
    for (name, value) in headers {
        let Ok(value) = reqwest::header::HeaderValue::from_bytes(&value) else {
            continue;
        };
        let status = client
            .get(&me)
            .header(name, value)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(431);
        note(format!("GET /v1/me with a hostile {name}"), status);
    }
    let many = (0..200).fold(client.get(&me).bearer_auth(token), |r, i| {
        r.header(format!("x-junk-{i}"), "j".repeat(2_000))
    });
    note(
        "200 headers of 2 KB".into(),
        many.send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(431),
    );

    // 3. Framing a library would not send.
    let auth = format!("Authorization: Bearer {token}\r\n");
    let framings: Vec<(&str, String)> = vec![
        (
            "a literal ../ path",
            "GET /v1/media/../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        ),
        (
            "an absolute-form target",
            "GET http://evil.example/v1/me HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        ),
        (
            "a body shorter than its length",
            format!(
                "POST /v1/media?file_name=a.bin HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100\r\n\r\nabc"
            ),
        ),
        (
            "two lengths",
            format!(
                "POST /v1/uploads HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 2\r\nContent-Length: 30\r\nContent-Type: application/json\r\n\r\n{{}}"
            ),
        ),
        (
            "a length and chunked",
            format!(
                "POST /v1/uploads HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 2\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n0\r\n\r\n"
            ),
        ),
        (
            "a broken chunk",
            format!(
                "POST /v1/uploads HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
            ),
        ),
        (
            "a bare LF request",
            "GET /v1/me HTTP/1.1\nHost: x\n\n".into(),
        ),
        (
            "a header without a colon",
            format!("GET /v1/me HTTP/1.1\r\nHost: x\r\n{auth}Oops\r\n\r\n"),
        ),
        ("HTTP/0.9", "GET /v1/me\r\n\r\n".into()),
        (
            "a NUL in the target",
            "GET /v1/me\0 HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        ),
    ];
    for (what, request) in framings {
        note(what.into(), raw(base, request.as_bytes()).await);
    }

    // 4. JSON bodies on every route that takes JSON.
    let conversation_path = format!("/v1/conversations/{conversation}");
    let json_routes = [
        ("POST", "/v1/uploads".to_owned()),
        ("POST", "/v1/conversations".to_owned()),
        ("POST", format!("{conversation_path}/messages")),
        ("POST", format!("{conversation_path}/receipts")),
        ("POST", format!("{conversation_path}/members")),
        ("PATCH", format!("{conversation_path}/members/victim")),
        ("PATCH", format!("{conversation_path}/messages/1")),
        ("POST", "/v1/messages/forward".to_owned()),
        ("POST", "/dev/sign-in".to_owned()),
    ];
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let long = format!(
        "{{\"file_name\": \"{}\", \"size\": 1}}",
        "n".repeat(3 << 20)
    );
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", b"{\"file_name\": \"a".to_vec()),
        ("deeply nested", deep.into_bytes()),
        ("3 MiB", long.into_bytes()),
        ("an array", b"[1,2,3]".to_vec()),
        ("wrong types", br#"{"file_name": 1, "size": "big", "kind": [], "members": "x", "text": {}, "client_message_id": 5}"#.to_vec()),
        ("a huge number", br#"{"file_name": "a", "size": 1e400, "read_seq": 1e400}"#.to_vec()),
        ("negative numbers", br#"{"file_name": "a", "size": -5, "read_seq": -1, "delivered_seq": -1}"#.to_vec()),
        ("duplicate keys", br#"{"file_name": "a", "file_name": "b", "size": 1, "size": 2}"#.to_vec()),
        ("a BOM", b"\xef\xbb\xbf{\"file_name\": \"a\", \"size\": 1}".to_vec()),
        ("invalid UTF-8", b"{\"file_name\": \"\xff\xfe\", \"size\": 1}".to_vec()),
        ("NaN", br#"{"file_name": "a", "size": NaN}"#.to_vec()),
        ("a NUL in a name", b"{\"file_name\": \"a\\u0000.txt\", \"size\": 1, \"user\": \"a\\u0000b\", \"title\": \"\\u0000\", \"kind\": \"group\", \"members\": [\"\\u0000\"]}".to_vec()),
        ("traversal in a name", br#"{"file_name": "../../etc/passwd", "size": 1}"#.to_vec()),
    ];
    for (method, path) in &json_routes {
        for (what, body) in &bodies {
            let status = client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                    format!("{base}{path}"),
                )
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .map(|r| r.status().as_u16())
                // A body past the limit may be cut off while it is still
                // being sent (the service answered 413 and closed): 0, a
                // refusal the client saw as a reset.
                .unwrap_or(if body.len() > 1 << 20 { 0 } else { 599 });
            note(format!("{method} {path} with {what} JSON"), status);
        }
        // The right JSON with the wrong type.
        let status = client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{base}{path}"),
            )
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body(r#"{"file_name": "a.txt", "size": 1}"#)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(599);
        note(format!("{method} {path} as text/plain"), status);
    }

    // 5. Chunks: digests, numbers, sizes (the session is 2 chunks of 8 MiB + 1).
    let chunk = |n: &str| format!("{base}/v1/uploads/{session}/chunks/{n}");
    let eight = vec![7u8; 8 << 20];
    let digests = [
        "sha-256=:!!!!:",
        "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:",
        "sha-256=AAAA",
        "sha-256=:AAAA:, sha-256=:BBBB:",
        "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:, sha-256=:AAAA:",
    ];
    for digest in digests {
        let status = client
            .put(chunk("1"))
            .bearer_auth(token)
            .header("content-digest", digest)
            .body(eight.clone())
            .send()
            .await
            .map(|r| r.status().as_u16())
            // Refused before the body was read, cut off while sending.
            .unwrap_or(0);
        note(format!("chunk with digest {digest:?}"), status);
    }
    for (n, body) in [
        ("0", vec![1u8]),
        ("3", vec![1u8]),
        ("-1", vec![1u8]),
        ("1", vec![1u8; 10]),
        ("2", vec![1u8; 2]),
        ("1.5", vec![1u8]),
    ] {
        let status = client
            .put(chunk(n))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(599);
        note(format!("chunk {n}"), status);
    }
    let status = client
        .post(format!("{base}/v1/uploads/{session}/complete"))
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(599);
    note("completing with chunks missing".into(), status);

    // 6. Decompression bombs: refused from their header, nothing stored.
    for (name, bytes) in [
        ("bomb.png", png_header(100_000, 100_000)),
        ("bomb.jpg", jpeg_header(65_000, 65_000)),
        ("wide.png", png_header(4_000_000_000, 1)),
    ] {
        let status = client
            .post(format!("{base}/v1/media?file_name={name}"))
            .bearer_auth(token)
            .body(bytes.clone())
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(599);
        note(format!("one-request {name}"), status);
    }
    answers
}

/// A JSON `POST` by `token`, its answer.
async fn posted(client: &reqwest::Client, url: &str, token: &str, body: Value) -> Value {
    client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json")
}

async fn a_hostile_corpus_gets_no_server_error_no_panic_and_stores_nothing(set: BackendSet) {
    let (settings, _dir) = test_settings(set).await;
    let service = ServiceProcess::start(&settings, free_port(), SECRET).await;
    let token = service.token("mallory");
    let client = reqwest::Client::new();
    // Mallory's own session and conversation, made before counting: the
    // corpus attacks them too.
    let session = posted(
        &client,
        &format!("{}/v1/uploads", service.base),
        &token,
        json!({ "file_name": "a.bin", "size": (8 << 20) + 1, "chunk_size": 8 << 20 }),
    )
    .await;
    let session = session["upload_id"].as_str().expect("upload id").to_owned();
    let conversation = posted(
        &client,
        &format!("{}/v1/conversations", service.base),
        &token,
        json!({ "kind": "direct", "members": ["victim"] }),
    )
    .await;
    let conversation = conversation["conversation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // A bomb sent in chunks, completed by the corpus.
    let bomb = png_header(100_000, 100_000);
    let bomb_session = posted(
        &client,
        &format!("{}/v1/uploads", service.base),
        &token,
        json!({ "file_name": "bomb.png", "size": bomb.len() }),
    )
    .await;
    let bomb_session = bomb_session["upload_id"]
        .as_str()
        .expect("upload id")
        .to_owned();
    let put = client
        .put(format!(
            "{}/v1/uploads/{bomb_session}/chunks/1",
            service.base
        ))
        .bearer_auth(&token)
        .body(bomb)
        .send()
        .await
        .expect("chunk");
    assert_eq!(put.status(), 200);
    let before = counts(&settings).await;

    let mut answers = corpus(&service, &token, &session, &conversation).await;
    let complete = client
        .post(format!(
            "{}/v1/uploads/{bomb_session}/complete",
            service.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("complete");
    let status = complete.status().as_u16();
    let problem: Value = complete.json().await.expect("problem");
    assert_eq!(problem["code"], "too-many-pixels", "{problem}");
    answers.push(Answer {
        what: "one-request-like chunked bomb completed".into(),
        status,
    });
    assert!(
        answers.len() >= 200,
        "the corpus has {} requests",
        answers.len()
    );
    let errors: Vec<String> = answers
        .iter()
        .filter(|a| a.status >= 500)
        .map(|a| format!("{} → {}", a.what, a.status))
        .collect();
    assert!(errors.is_empty(), "server errors:\n{}", errors.join("\n"));
    let accepted: Vec<String> = answers
        .iter()
        // tus's capability request answers anyone.
        .filter(|a| (200..400).contains(&a.status) && !a.what.starts_with("OPTIONS"))
        .map(|a| format!("{} → {}", a.what, a.status))
        .collect();
    assert!(
        accepted.is_empty(),
        "hostile requests taken:\n{}",
        accepted.join("\n")
    );
    let bombs: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.what.starts_with("one-request"))
        .collect();
    assert!(
        bombs.iter().all(|a| a.status == 413),
        "bombs are refused as too many pixels"
    );
    let log = service.log();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
    // Nothing stored; the refused bomb's own chunk is dropped with its session.
    let mut expected = before;
    *expected.get_mut("upload_chunks").expect("chunks") -= 1;
    assert_eq!(
        counts(&settings).await,
        expected,
        "the corpus stored something"
    );
    println!(
        "hostile corpus on {set:?}: {} requests, statuses {:?}",
        answers.len(),
        answers
            .iter()
            .fold(BTreeMap::<u16, usize>::new(), |mut m, a| {
                *m.entry(a.status).or_default() += 1;
                m
            })
    );
}
both_sets!(a_hostile_corpus_gets_no_server_error_no_panic_and_stores_nothing);

/// Malformed media is a file: it is stored and downloadable as it came,
/// and its processing ends, `ready` or `failed` with a reason, never stuck
/// and never a 500. A polyglot is served as what its bytes begin as, and
/// anything that could run in a browser only as an attachment.
async fn malformed_media_is_stored_as_a_file_and_its_processing_ends_with_a_reason(
    set: BackendSet,
) {
    let app = media_e2e::TestApp::spawn(set).await;
    let user = app.user("mallory");
    let jpeg = media_e2e::test_image(image::ImageFormat::Jpeg, 320, 240, 11);
    let png = media_e2e::test_image(image::ImageFormat::Png, 64, 64, 12);
    let video = media_e2e::h264_clip(2);
    let mut corrupt_png = png.clone();
    let middle = corrupt_png.len() / 2;
    for b in &mut corrupt_png[middle..middle + 64] {
        *b ^= 0x5a;
    }
    let mut jpeg_html = jpeg.clone();
    jpeg_html.extend(b"<html><script>alert(document.cookie)</script></html>");
    let mut gif_zip = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
    gif_zip.extend(b"PK\x03\x04\x14\x00\x00\x00\x00\x00payload.class");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.jpg", jpeg[..jpeg.len() * 3 / 5].to_vec()),
        ("corrupt.png", corrupt_png),
        ("truncated.mp4", video[..video.len() / 3].to_vec()),
        ("photo-and-page.jpg", jpeg_html),
        ("gif-and-zip.gif", gif_zip),
        (
            "page.jpg",
            b"<!doctype html><html><script>alert(1)</script></html>".to_vec(),
        ),
        (
            "drawing.png",
            br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let media = user.upload(name, &bytes).await;
        let id = media["media_id"].as_str().expect("id").to_owned();
        let settled = crate::processing::settled(&user, &id).await;
        let status = settled["status"].as_str().expect("status");
        assert!(status == "ready" || status == "failed", "{name}: {settled}");
        if status == "failed" {
            let reason = settled["failure_reason"].as_str().unwrap_or("");
            assert!(!reason.is_empty(), "{name}: a failure says why: {settled}");
        }
        // The original, byte for byte, as what its bytes are.
        let answer = user.get(&format!("/v1/media/{id}/content")).await;
        assert_eq!(answer.status(), 302, "{name}");
        let url = app.absolute(&media_e2e::header(&answer, "location"));
        let download = app.client.get(url).send().await.expect("download");
        assert_eq!(download.status(), 200, "{name}");
        let content_type = media_e2e::header(&download, "content-type");
        let disposition = media_e2e::header(&download, "content-disposition");
        assert_eq!(
            download.bytes().await.expect("bytes").as_ref(),
            &bytes[..],
            "{name}"
        );
        if content_type.contains("svg")
            || !content_type.starts_with("image/") && !content_type.starts_with("video/")
        {
            assert!(
                disposition.starts_with("attachment"),
                "{name} ({content_type}): {disposition}"
            );
        }
        println!("{name}: {status} as {content_type}, {disposition}");
    }
}
both_sets!(malformed_media_is_stored_as_a_file_and_its_processing_ends_with_a_reason);
