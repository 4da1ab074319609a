//! The HTTP surface: one router per resource, merged at the root where the
//! tower layers are added once. Handlers parse what the client sent into
//! typed values, call a service, and turn its answer (or its error, in
//! `errors`) into a response; no rule and no backend call lives here.

mod account;
mod admin;
mod auth;
mod chat;
mod downloads;
mod errors;
mod health;
mod media;
mod openapi;
pub mod problem;
mod realtime;
mod server;
mod state;
pub mod streams;
mod tus;
mod uploads;
mod web;

pub use server::{ConnectionLimits, serve};
pub use state::AppState;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use problem::ApiError;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application router with its layers.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    // Ordinary JSON calls get the short deadline; routes that carry upload
    // bytes (added by later resources) get `upload_request_timeout`, and event
    // streams none.
    let json_limit = usize::try_from(settings.limits.max_json_body.0).unwrap_or(usize::MAX);
    let api = OpenApiRouter::new()
        .merge(health::router())
        .merge(admin::router(state.clone(), json_limit))
        .merge(account::router())
        .merge(web::router(json_limit))
        .merge(uploads::router(json_limit))
        .merge(media::router())
        .merge(downloads::router())
        .merge(chat::router(json_limit.saturating_add(
            settings.chat.max_text_bytes.saturating_mul(6),
        )))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(openapi::docs_page))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ));
    let bytes = OpenApiRouter::new()
        .merge(uploads::chunk_router())
        .merge(media::upload_router())
        .merge(tus::router())
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            settings.upload_request_timeout,
        ));
    // Every route is registered with its description: the document and the
    // routes come out of one value.
    let (routes, described) = OpenApiRouter::new()
        .merge(api)
        .merge(bytes)
        .merge(uploads::event_router())
        .merge(realtime::router())
        .split_for_parts();
    let docs = Arc::new(openapi::ApiDocs::new(described, &settings));

    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .layer(axum::Extension(docs))
        .layer(axum::Extension(Arc::new(web::WebClient::new(&settings))))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::map_request(drop_unusable_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
                        let id = req
                            .headers()
                            .get(&REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = %id)
                    }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(middleware::map_response(problem::problem_for_bare_errors))
                // tus's capability request is an OPTIONS that is not a CORS
                // preflight: answered before the CORS layer takes it for one.
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    tus::capabilities,
                ))
                .layer(cors(&settings.cors_origins))
                .layer(middleware::from_fn(close_after_refused_body))
                .layer(middleware::from_fn(record_metrics)),
        )
}

/// Longest request id a client may choose.
const MAX_REQUEST_ID: usize = 64;

/// A client's `x-request-id` is kept only when it is short and plain
/// (letters, digits, `-`, `_`, `.`, `:`), since it goes into every log line
/// of the request; any other is dropped and one is made for the request.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    let usable = request.headers().get(&REQUEST_ID).is_none_or(|v| {
        let v = v.as_bytes();
        !v.is_empty()
            && v.len() <= MAX_REQUEST_ID
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    });
    if !usable {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(
            [
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("content-digest"),
            ]
            .into_iter()
            .chain(
                tus::REQUEST_HEADERS
                    .iter()
                    .map(|h| HeaderName::from_static(h)),
            )
            .collect::<Vec<_>>(),
        )
        .expose_headers(
            [header::LOCATION, header::ETAG, REQUEST_ID.clone()]
                .into_iter()
                .chain(
                    tus::RESPONSE_HEADERS
                        .iter()
                        .map(|h| HeaderName::from_static(h)),
                )
                .collect::<Vec<_>>(),
        )
        .max_age(Duration::from_secs(3600))
}

async fn not_found() -> ApiError {
    ApiError::not_found("not-found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this route does not take that method",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("a request handler panicked").into_response()
}

/// A refusal of a request that carried a body closes the connection: the
/// body was most likely not read (a `413` before the first byte, a `401`
/// before an 8 MiB chunk), so the connection cannot carry another request,
/// and a client that pooled it would see its next request fail. Saying so
/// lets the client open a fresh one. Successes keep the connection.
async fn close_after_refused_body(request: Request, next: Next) -> Response {
    let had_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|n| n.as_bytes() != b"0")
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    let mut response = next.run(request).await;
    if had_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Request count and latency by method, route template (low cardinality) and status.
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // A label value per method a client can invent would be a new time
    // series per request: the standard methods by name, the rest as one.
    let method = match *request.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::OPTIONS => request.method().as_str(),
        _ => "other",
    }
    .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
