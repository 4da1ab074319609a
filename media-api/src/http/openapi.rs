//! The API's description: an OpenAPI 3.1 document generated from the
//! handlers (each route is registered with its `#[utoipa::path]`, so a route
//! cannot exist undescribed) and the types they take and give, served as
//! `GET /openapi.json`, and a page people read, `GET /docs`, rendered here
//! from the same document with nothing loaded from any other host.
//!
//! Each handler names the problems it answers itself (a `problems!` type);
//! what every route of a kind may answer (a bad token, a malformed JSON
//! body, a backend that is down) is added here, once, by looking at the
//! operation: its security, its body, its parameters.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::openapi::{RefOr, Response as ApiResponse};

use crate::config::Settings;

/// The media type of every error body.
use super::problem::PROBLEM_JSON;

/// An error, as every failure is answered (RFC 9457); a problem may carry
/// more members (`limit`, `retry_after`, `missing_chunks`, …).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Problem {
    /// `urn:media-api:problem:CODE`.
    r#type: String,
    /// The status's reason phrase.
    title: String,
    /// The HTTP status.
    status: u16,
    /// The stable machine code: clients switch on it.
    code: String,
    /// What went wrong, for a person.
    detail: String,
}

/// A JSON object whose members the operation's description lists (the
/// operators' reports).
pub(crate) struct Report;

impl utoipa::PartialSchema for Report {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Object)
            .description(Some("a report; its members are listed with each operation"))
            .into()
    }
}

impl utoipa::ToSchema for Report {}

/// The problem responses of one status, the codes listed.
pub(crate) fn problem_response(codes: &[&str]) -> ApiResponse {
    use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let code = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().copied()));
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("Problem"))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("code", code),
        );
    ResponseBuilder::new()
        .description(describe(codes))
        .content(
            PROBLEM_JSON,
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

fn problem_json(codes: &[&str]) -> Value {
    json!({
        "description": describe(codes),
        "content": { PROBLEM_JSON: { "schema": {
            "allOf": [
                { "$ref": "#/components/schemas/Problem" },
                { "type": "object", "properties": { "code": { "type": "string", "enum": codes } } }
            ]
        } } }
    })
}

fn describe(codes: &[&str]) -> String {
    let listed: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
    format!("A problem: {}", listed.join(", "))
}

/// The responses of a `problems!` type.
pub(crate) fn problem_responses(list: &[(u16, &[&str])]) -> BTreeMap<String, RefOr<ApiResponse>> {
    list.iter()
        .map(|(status, codes)| (status.to_string(), RefOr::T(problem_response(codes))))
        .collect()
}

/// Declares the problems a handler answers itself, by status, as a type
/// its `#[utoipa::path(responses(…))]` names.
macro_rules! problems {
    ($(#[$meta:meta])* $name:ident { $($status:literal => [$($code:literal),* $(,)?]),* $(,)? }) => {
        $(#[$meta])*
        pub(crate) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::Response>,
            > {
                $crate::http::openapi::problem_responses(&[$(($status, &[$($code),*])),*])
            }
        }
    };
}
pub(crate) use problems;

/// What a bad bearer token is answered (`crate::auth::AuthError::code`).
const TOKEN_PROBLEMS: &[&str] = &[
    "token-missing",
    "token-malformed",
    "token-invalid",
    "token-expired",
    "token-not-yet-valid",
    "token-lifetime-too-long",
];

/// The finished document: what every operation of a kind may answer, the
/// auth scheme, and the limits in force.
pub(crate) fn finish(api: utoipa::openapi::OpenApi, settings: &Settings) -> Value {
    let mut doc = serde_json::to_value(&api).unwrap_or_default();
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({
        "title": "media-api",
        "version": env!("CARGO_PKG_VERSION"),
        "description": overview(settings),
        "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
    });
    doc["components"]["schemas"]["Problem"] =
        serde_json::to_value(<Problem as utoipa::PartialSchema>::schema()).unwrap_or_default();
    doc["components"]["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An HS256 JWT: `sub` the user id, `exp`, optional `scope: \"admin\"`."
        }
    });
    let Some(paths) = doc["paths"].as_object_mut() else {
        return doc;
    };
    // A wildcard segment (`{*key}`, axum's) is a plain parameter here.
    *paths = std::mem::take(paths)
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if !is_method(method) {
                continue;
            }
            common_problems(path, method, operation);
            // Handlers of different resources share names (`create`): the
            // id is the handler's name under its tag.
            let tag = operation["tags"][0].as_str().unwrap_or("api").to_owned();
            let name = operation["operationId"]
                .as_str()
                .unwrap_or(method)
                .to_owned();
            operation["operationId"] = json!(format!("{tag}_{name}"));
        }
    }
    add_links(&mut doc);
    doc
}

/// Where the answer of one operation leads (OpenAPI links): the id it
/// made, into the operations on that resource. A client, and a stateful
/// fuzzer, can follow them.
struct Links {
    /// `METHOD path` of the operation that makes the resource.
    from: &'static str,
    /// The status it answers when it made one.
    status: &'static str,
    /// Each parameter of the operations below, and where in the answer it is.
    parameters: &'static [(&'static str, &'static str)],
    /// `METHOD path` of the operations on it.
    to: &'static [&'static str],
}

const UPLOAD: &[(&str, &str)] = &[("upload_id", "$response.body#/upload_id")];
const MEDIA: &[(&str, &str)] = &[("media_id", "$response.body#/media_id")];
const CONVERSATION: &[(&str, &str)] = &[("id", "$response.body#/conversation_id")];
const MESSAGE: &[(&str, &str)] = &[
    ("id", "$response.body#/conversation_id"),
    ("seq", "$response.body#/seq"),
];

const LINKS: &[Links] = &[
    Links {
        from: "post /v1/uploads",
        status: "201",
        parameters: UPLOAD,
        to: &[
            "get /v1/uploads/{upload_id}",
            "put /v1/uploads/{upload_id}/chunks/{n}",
            "post /v1/uploads/{upload_id}/complete",
            "delete /v1/uploads/{upload_id}",
        ],
    },
    Links {
        from: "post /v1/media",
        status: "201",
        parameters: MEDIA,
        to: &[
            "get /v1/media/{media_id}",
            "get /v1/media/{media_id}/content",
            "delete /v1/media/{media_id}",
        ],
    },
    Links {
        from: "post /v1/conversations",
        status: "201",
        parameters: CONVERSATION,
        to: &[
            "get /v1/conversations/{id}",
            "post /v1/conversations/{id}/members",
            "post /v1/conversations/{id}/messages",
            "get /v1/conversations/{id}/messages",
            "post /v1/conversations/{id}/receipts",
        ],
    },
    Links {
        from: "post /v1/conversations/{id}/messages",
        status: "201",
        parameters: MESSAGE,
        to: &[
            "patch /v1/conversations/{id}/messages/{seq}",
            "delete /v1/conversations/{id}/messages/{seq}",
            "get /v1/conversations/{id}/messages/{seq}/receipts",
        ],
    },
];

fn add_links(doc: &mut Value) {
    for links in LINKS {
        let (from_method, from_path) = links.from.split_once(' ').unwrap_or_default();
        let parameters: serde_json::Map<String, Value> = links
            .parameters
            .iter()
            .map(|(name, from)| ((*name).to_owned(), json!(from)))
            .collect();
        for to in links.to {
            let (to_method, to_path) = to.split_once(' ').unwrap_or_default();
            let Some(target) = doc["paths"][to_path][to_method]["operationId"]
                .as_str()
                .map(str::to_owned)
            else {
                continue;
            };
            let Some(response) = doc["paths"][from_path][from_method]["responses"]
                .get_mut(links.status)
                .filter(|r| r.is_object())
            else {
                continue;
            };
            response["links"][target.clone()] =
                json!({ "operationId": target, "parameters": parameters });
        }
    }
}

fn is_method(key: &str) -> bool {
    matches!(
        key,
        "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace"
    )
}

/// What a route answers because of what it is, whatever its handler does.
fn common_problems(path: &str, method: &str, operation: &mut Value) {
    // Everything under /v1 takes a bearer token, but tus's capability
    // request; a route elsewhere that reads one says so, and what it answers.
    if operation.get("security").is_none() {
        if path.starts_with("/v1/") && method != "options" {
            operation["security"] = json!([{ "bearer": [] }]);
            add_problems(operation, 401, TOKEN_PROBLEMS);
        } else {
            operation["security"] = json!([]);
        }
    }
    let takes_json = operation["requestBody"]["content"]
        .as_object()
        .is_some_and(|c| c.contains_key("application/json"));
    if takes_json {
        add_problems(operation, 400, &["malformed-json", "json-not-object"]);
        add_problems(operation, 413, &["body-too-large"]);
        add_problems(operation, 415, &["json-content-type-required"]);
        add_problems(operation, 422, &["invalid-json-fields"]);
    }
    let parameters = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if parameters.iter().any(|p| p["in"] == "path") {
        add_problems(operation, 400, &["invalid-path-parameter"]);
    }
    if parameters.iter().any(|p| p["in"] == "query") {
        add_problems(operation, 400, &["invalid-query"]);
    }
    // Every request has a deadline (but streams), and needs its backends.
    add_problems(operation, 408, &["request-timeout", "body-too-slow"]);
    add_problems(operation, 503, &["backend-unavailable"]);
}

/// Adds problem codes at a status: to the problems already listed there,
/// or beside another answer of that status.
fn add_problems(operation: &mut Value, status: u16, codes: &[&str]) {
    let responses = &mut operation["responses"];
    let key = status.to_string();
    let Some(existing) = responses.get_mut(&key) else {
        responses[key] = problem_json(codes);
        return;
    };
    let listed =
        existing.pointer("/content/application~1problem+json/schema/allOf/1/properties/code/enum");
    let mut all: Vec<String> = listed
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for code in codes {
        if !all.iter().any(|c| c == code) {
            all.push((*code).to_owned());
        }
    }
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let fresh = problem_json(&names);
    existing["content"][PROBLEM_JSON] = fresh["content"][PROBLEM_JSON].clone();
    let description = existing["description"].as_str().unwrap_or_default();
    existing["description"] = if description.is_empty() || description.starts_with("A problem: ") {
        fresh["description"].clone()
    } else {
        json!(format!("{description}; or {}", describe(&names)))
    };
}

/// The document's introduction: how to call the API, and the limits in force.
fn overview(settings: &Settings) -> String {
    let l = &settings.limits;
    let q = &settings.quotas;
    format!(
        "Chunked, resumable, content-addressed media uploads, conversations and \
         their messages, live delivery, and the operators' tools.\n\n\
         Every call under `/v1` takes `Authorization: Bearer <token>`. Every error \
         is an `application/problem+json` body with a stable `code`.\n\n\
         Limits in force on this server:\n\n\
         | limit | value |\n|---|---|\n\
         | largest chunked or tus upload | {} bytes |\n\
         | largest one-request upload (`POST /v1/media`) | {} bytes |\n\
         | default chunk size | {} bytes |\n\
         | largest chunk size | {} bytes |\n\
         | largest JSON body | {} bytes |\n\
         | largest image / audio / video / other file | {} / {} / {} / {} bytes |\n\
         | incomplete uploads expire after | {} s |\n\
         | most items in one page | {} |\n\
         | most partial uploads in one tus final upload | {} |\n\
         | stored bytes per user | {} |\n\
         | open uploads per user | {} |\n",
        l.max_file_size.0,
        l.max_single_upload.0,
        l.default_chunk_size.0,
        l.max_chunk_size.0,
        l.max_json_body.0,
        l.max_image_size.0,
        l.max_audio_size.0,
        l.max_video_size.0,
        l.max_document_size.0,
        l.upload_expiry.as_secs(),
        l.max_page_size,
        l.max_concat_uploads,
        q.stored_bytes.0,
        q.open_uploads,
    )
}

/// The document, rendered once when the router is built.
#[derive(Debug)]
pub(crate) struct ApiDocs {
    /// `/openapi.json`.
    pub(crate) json: String,
    /// `/docs`.
    pub(crate) html: String,
}

impl ApiDocs {
    /// Finishes the generated document and renders both forms.
    pub(crate) fn new(api: utoipa::openapi::OpenApi, settings: &Settings) -> Self {
        let doc = finish(api, settings);
        Self {
            json: serde_json::to_string_pretty(&doc).unwrap_or_default(),
            html: render_page(&doc),
        }
    }
}

/// The API page: every operation by tag, then every schema; plain HTML
/// with its style inline (no script, nothing from another host).
fn render_page(doc: &Value) -> String {
    let mut out = String::with_capacity(256 * 1024);
    out.push_str(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>media-api: the API</title><style>",
    );
    out.push_str(PAGE_STYLE);
    out.push_str("</style></head><body><main>");
    out.push_str(&format!(
        "<h1>media-api {}</h1><p>The machine-readable form of this page: \
         <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI {}).</p>",
        escape(doc["info"]["version"].as_str().unwrap_or_default()),
        escape(doc["openapi"].as_str().unwrap_or_default()),
    ));
    out.push_str(&markdown(
        doc["info"]["description"].as_str().unwrap_or_default(),
    ));
    let mut by_tag: BTreeMap<String, Vec<(String, String, &Value)>> = BTreeMap::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                if !is_method(method) {
                    continue;
                }
                let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
                by_tag
                    .entry(tag)
                    .or_default()
                    .push((method.clone(), path.clone(), op));
            }
        }
    }
    out.push_str("<nav aria-label=\"sections\"><ul>");
    for tag in by_tag.keys() {
        out.push_str(&format!(
            "<li><a href=\"#tag-{0}\">{0}</a></li>",
            escape(tag)
        ));
    }
    out.push_str("<li><a href=\"#schemas\">schemas</a></li></ul></nav>");
    for (tag, ops) in &by_tag {
        out.push_str(&format!("<h2 id=\"tag-{0}\">{0}</h2>", escape(tag)));
        for (method, path, op) in ops {
            render_operation(&mut out, method, path, op);
        }
    }
    out.push_str("<h2 id=\"schemas\">Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            out.push_str(&format!(
                "<section id=\"schema-{0}\"><h3>{0}</h3>",
                escape(name)
            ));
            if let Some(d) = schema["description"].as_str() {
                out.push_str(&markdown(d));
            }
            render_properties(&mut out, schema);
            out.push_str("</section>");
        }
    }
    out.push_str("</main></body></html>");
    out
}

fn render_operation(out: &mut String, method: &str, path: &str, op: &Value) {
    out.push_str(&format!(
        "<section class=\"op\"><h3><span class=\"m {0}\">{1}</span> <code>{2}</code></h3>",
        escape(method),
        escape(&method.to_uppercase()),
        escape(path)
    ));
    if let Some(summary) = op["summary"].as_str() {
        out.push_str(&markdown(summary));
    }
    if let Some(description) = op["description"].as_str() {
        out.push_str(&markdown(description));
    }
    let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
    out.push_str(if secured {
        "<p class=\"auth\">Needs <code>Authorization: Bearer &lt;token&gt;</code>.</p>"
    } else {
        "<p class=\"auth\">No token needed.</p>"
    });
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str("<table><caption>Parameters</caption><tr><th>name</th><th>in</th><th>type</th><th>required</th><th>what</th></tr>");
        for p in params {
            out.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(p["name"].as_str().unwrap_or_default()),
                escape(p["in"].as_str().unwrap_or_default()),
                type_of(&p["schema"]),
                if p["required"] == true { "yes" } else { "no" },
                markdown_inline(p["description"].as_str().unwrap_or_default()),
            ));
        }
        out.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        out.push_str("<p>Body: ");
        let kinds: Vec<String> = content
            .iter()
            .map(|(ct, c)| format!("<code>{}</code> {}", escape(ct), type_of(&c["schema"])))
            .collect();
        out.push_str(&kinds.join("; "));
        out.push_str("</p>");
    }
    if let Some(responses) = op["responses"].as_object() {
        out.push_str(
            "<table><caption>Answers</caption><tr><th>status</th><th>body</th><th>what</th></tr>",
        );
        for (status, r) in responses {
            let body = r["content"]
                .as_object()
                .map(|c| {
                    c.iter()
                        .map(|(ct, c)| {
                            let shown = if ct == PROBLEM_JSON {
                                "<a href=\"#schema-Problem\">Problem</a>".to_owned()
                            } else {
                                type_of(&c["schema"])
                            };
                            format!("<code>{}</code> {shown}", escape(ct))
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(status),
                body,
                markdown_inline(r["description"].as_str().unwrap_or_default())
            ));
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn render_properties(out: &mut String, schema: &Value) {
    let Some(properties) = schema["properties"].as_object() else {
        if let Some(values) = schema["enum"].as_array() {
            let listed: Vec<String> = values
                .iter()
                .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
                .collect();
            out.push_str(&format!("<p>One of {}.</p>", listed.join(", ")));
        }
        for part in schema["allOf"].as_array().into_iter().flatten() {
            render_properties(out, part);
        }
        return;
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("<table><tr><th>member</th><th>type</th><th>required</th><th>what</th></tr>");
    for (name, p) in properties {
        out.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            type_of(p),
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                "no"
            },
            markdown_inline(p["description"].as_str().unwrap_or_default())
        ));
    }
    out.push_str("</table>");
}

/// A schema's type, linked when it is a named one.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let parts: Vec<String> = one.iter().map(type_of).collect();
        return parts.join(" | ");
    }
    if schema["type"] == "array" {
        return format!("array of {}", type_of(&schema["items"]));
    }
    match &schema["type"] {
        Value::String(t) => escape(t),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(escape)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    }
}

/// Paragraphs of a doc comment, with `code` spans and `|` tables kept as text.
fn markdown(text: &str) -> String {
    text.split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            if p.trim_start().starts_with('|') {
                format!("<pre>{}</pre>", escape(p))
            } else {
                format!("<p>{}</p>", markdown_inline(p))
            }
        })
        .collect()
}

/// `code` spans in escaped text.
fn markdown_inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in escape(text).split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(part);
            out.push_str("</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page's style: readable on a phone and on a desk, with enough contrast.
const PAGE_STYLE: &str = "body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff}\
main{max-width:60rem;margin:0 auto;padding:1rem}\
code,pre{font-family:ui-monospace,monospace;font-size:.9em;background:#f2f2f2;padding:0 .2em}\
pre{padding:.5em;overflow-x:auto}\
table{border-collapse:collapse;width:100%;margin:.5em 0;display:block;overflow-x:auto}\
caption{text-align:left;font-weight:600}\
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
.op{border-top:1px solid #ccc;padding-top:.5em}\
.m{display:inline-block;min-width:4.5em;color:#fff;background:#333;border-radius:3px;padding:0 .3em;font-size:.85em;text-align:center}\
.get{background:#1f5f99}.post{background:#1b6e3a}.put,.patch{background:#7a4b00}.delete{background:#9b1c1c}\
.auth{color:#444;font-size:.9em}\
nav ul{display:flex;flex-wrap:wrap;gap:1em;list-style:none;padding:0}\
a{color:#0b4f8a}";

/// `GET /openapi.json`: the document, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, content_type = "application/json", body = Report, description = "this document")))]
pub(crate) async fn openapi_json(
    axum::Extension(docs): axum::Extension<std::sync::Arc<ApiDocs>>,
) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        docs.json.clone(),
    )
        .into_response()
}

/// `GET /docs`: the API for people, rendered from the same document.
#[utoipa::path(get, path = "/docs", tag = "health",
    responses((status = 200, content_type = "text/html; charset=utf-8", body = String, description = "this page")))]
pub(crate) async fn docs_page(
    axum::Extension(docs): axum::Extension<std::sync::Arc<ApiDocs>>,
) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            ),
        ],
        docs.html.clone(),
    )
        .into_response()
}
