//! The web client: the chat page at `/` and its assets at `/assets/`, built
//! from `web/` by `infra/build-web.sh` and embedded at compile time (the
//! binary carries them; nothing is read from disk or another host), and the
//! development sign-in it offers on the embedded default.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::problems;
use super::problem::{ApiError, Json};
use super::state::AppState;
use crate::config::Settings;
use crate::ids::UserId;

mod files {
    include!(concat!(env!("OUT_DIR"), "/web_files.rs"));
}

/// How long a development sign-in's token lives (or less, when the
/// service's `max_token_lifetime` is shorter).
const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

pub(crate) fn router(json_limit: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(asset))
        .routes(routes!(dev_sign_in))
        .layer(axum::extract::DefaultBodyLimit::max(json_limit))
}

/// The page and its assets, ready to serve: the page carries this
/// service's client settings, every file its validator.
pub(crate) struct WebClient {
    page: Option<Asset>,
    assets: Vec<(&'static str, Asset)>,
    csp: HeaderValue,
}

struct Asset {
    body: axum::body::Bytes,
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(name: &str, body: Vec<u8>) -> Self {
        let hash = blake3::hash(&body);
        let etag = HeaderValue::from_str(&format!("\"{}\"", &hash.to_hex()[..32]))
            .unwrap_or(HeaderValue::from_static("\"0\""));
        Self {
            body: body.into(),
            content_type: content_type_of(name),
            etag,
        }
    }
}

fn content_type_of(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "map") => "application/json",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// What the page learns of this service before any call: whether it may
/// offer the development sign-in.
#[derive(Serialize)]
struct ClientConfig {
    dev_sign_in: bool,
}

impl WebClient {
    pub(crate) fn new(settings: &Settings) -> Self {
        let config = serde_json::to_string(&ClientConfig {
            dev_sign_in: settings.dev_sign_in(),
        })
        .unwrap_or_default();
        let mut page = None;
        let mut assets = Vec::new();
        for (name, bytes) in files::FILES {
            if *name == "index.html" {
                // The page reads its settings from this element, inert JSON
                // (`<` escaped, so it cannot close the element).
                let html = String::from_utf8_lossy(bytes).replace(
                    "<!--client-config-->",
                    &format!(
                        "<script type=\"application/json\" id=\"client-config\">{}</script>",
                        config.replace('<', "\\u003c")
                    ),
                );
                page = Some(Asset::new(name, html.into_bytes()));
            } else if let Some(asset) = name.strip_prefix("assets/") {
                assets.push((asset, Asset::new(name, bytes.to_vec())));
            }
        }
        Self {
            page,
            assets,
            csp: content_security_policy(settings),
        }
    }

    fn serve(&self, asset: &Asset, request: &HeaderMap) -> Response {
        let unchanged = request
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == asset.etag.as_bytes());
        let mut response = if unchanged {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut full = asset.body.clone().into_response();
            full.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            full
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, asset.etag.clone());
        // Always revalidated: a new build is seen at once, an unchanged one
        // costs a 304.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        response
    }
}

/// The page runs only its own script and style, talks only to this service
/// (and its WebSocket), and shows media only from where this service's
/// download URLs point (the CDN edge, the S3 endpoint, or itself). It may be
/// framed by the origins `cors_origins` names (a host app handing it a
/// token), by no other.
fn content_security_policy(settings: &Settings) -> HeaderValue {
    let mut media = vec!["'self'".to_owned(), "blob:".into(), "data:".into()];
    if let Some(cdn) = settings.cdn_base_url.as_deref().and_then(origin_of) {
        media.push(cdn);
    } else if settings.blob_store.is_some() {
        match std::env::var("AWS_ENDPOINT_URL_S3")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .ok()
            .as_deref()
            .and_then(origin_of)
        {
            Some(endpoint) => media.push(endpoint),
            None => media.push("https://*.amazonaws.com".into()),
        }
    }
    if let Some(public) = settings.public_base_url.as_deref().and_then(origin_of) {
        media.push(public);
    }
    let media = media.join(" ");
    let ancestors = if settings.cors_origins.iter().any(|o| o == "*") {
        "*".to_owned()
    } else {
        std::iter::once("'self'".to_owned())
            .chain(settings.cors_origins.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let policy = format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src {media}; media-src {media}; connect-src 'self'; font-src 'self'; \
         manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'self'"))
}

/// `scheme://host[:port]` of an absolute `http(s)` URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    (matches!(scheme, "http" | "https") && !authority.is_empty() && authority.chars().all(plain))
        .then(|| format!("{scheme}://{authority}"))
}

/// What `/` answers when the binary was built without the web client.
const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>media-api</title>\
<p>This build of media-api carries no web client. Build it with \
<code>infra/build-web.sh</code> (or run the service with <code>infra/run.sh</code>, \
which does), then rebuild the service.</p>";

/// `GET /`: the chat page.
#[utoipa::path(get, path = "/", tag = "web",
    responses(
        (status = 200, content_type = "text/html; charset=utf-8", body = String, description = "the web client"),
        (status = 304, description = "unchanged since the `ETag` the browser holds"),
    ))]
pub(crate) async fn page(
    axum::Extension(web): axum::Extension<Arc<WebClient>>,
    request: HeaderMap,
) -> Response {
    match &web.page {
        Some(page) => web.serve(page, &request),
        None => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            NOT_BUILT,
        )
            .into_response(),
    }
}

problems!(
    /// An asset the page does not have.
    AssetProblems { 404 => ["not-found"] }
);

/// `GET /assets/{file}`: the page's script, style and icons.
#[utoipa::path(get, path = "/assets/{file}", tag = "web",
    params(("file" = String, Path, description = "an asset of the built page")),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>, description = "the asset, typed by its name"),
        (status = 304, description = "unchanged since the `ETag` the browser holds"),
        AssetProblems,
    ))]
pub(crate) async fn asset(
    axum::Extension(web): axum::Extension<Arc<WebClient>>,
    Path(file): Path<String>,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    web.assets
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, asset)| web.serve(asset, &request))
        .ok_or_else(|| ApiError::not_found("not-found", "no such asset"))
}

/// Who to sign in as.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// A user id: 1 to 128 bytes, no control characters.
    user: String,
}

/// A token for the development sign-in.
#[derive(Serialize, utoipa::ToSchema)]
struct SignedIn {
    /// The bearer token.
    token: String,
    /// Whom it names.
    user: String,
    /// RFC 3339: when it stops working.
    expires_at: String,
}

problems!(
    /// What the development sign-in may answer.
    SignInProblems {
        400 => ["invalid-user-id"],
        403 => ["dev-sign-in-disabled"],
    }
);

/// The development sign-in (outside `/v1`: it takes no token): a user name in, a bearer token for it out, no
/// password. Only where `dev_sign_in` is on (the embedded default's
/// default); elsewhere `403 dev-sign-in-disabled`, and the host app gives
/// the page its token.
#[utoipa::path(post, path = "/dev/sign-in", tag = "web",
    request_body = SignIn,
    responses((status = 200, body = SignedIn), SignInProblems))]
async fn dev_sign_in(
    State(state): State<AppState>,
    Json(request): Json<SignIn>,
) -> Result<Json<SignedIn>, ApiError> {
    if !state.settings.dev_sign_in() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "dev-sign-in-disabled",
            "the development sign-in is off on this service (MEDIA_DEV_SIGN_IN); the app that \
             hosts the page provides its token",
        ));
    }
    let user = UserId::parse(&request.user)
        .map_err(|why| ApiError::bad_request("invalid-user-id", why))?;
    let ttl = DEV_TOKEN_TTL.min(state.tokens.max_lifetime());
    let token = state
        .tokens
        .mint(&user, false, ttl)
        .map_err(|e| ApiError::internal(format!("while minting a token: {e}")))?;
    let expires_at =
        crate::ids::rfc3339((time::OffsetDateTime::now_utc() + ttl).unix_timestamp() * 1000);
    Ok(Json(SignedIn {
        token,
        user: user.to_string(),
        expires_at,
    }))
}
