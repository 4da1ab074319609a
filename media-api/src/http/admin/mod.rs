//! The operators' API (`/v1/admin/…`): statistics, the processing jobs and
//! the audit log. Every route needs a token with the `admin` scope (`403
//! admin-required` otherwise), and every call, refused or not, is written
//! to the audit log: who, when, what, with which request, and the outcome.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod batches;
mod moderation;

use super::openapi::{Report, problems};
use super::problem::{ApiError, Json, Path, Query};
use super::state::AppState;
use crate::auth::Caller;
use crate::ids::now_ms;
use crate::metadata_store::admin::AuditEntry;

/// The longest request body kept in an audit entry.
const AUDITED_BODY: usize = 4096;

pub(crate) fn router(state: AppState, json_limit: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(jobs))
        .routes(routes!(retry))
        .routes(routes!(audit_log))
        .routes(routes!(content))
        .routes(routes!(moderation::block, moderation::unblock))
        .routes(routes!(erase))
        .routes(routes!(batches::reprocess))
        .routes(routes!(batches::fsck))
        .routes(routes!(batches::list))
        .routes(routes!(batches::one))
        .routes(routes!(batches::act))
        .layer(middleware::from_fn_with_state((state, json_limit), audited))
}

problems!(
    /// A token without the admin scope.
    AdminProblems { 403 => ["admin-required"] }
);
problems!(
    /// A listing whose page cannot be read.
    AdminPageProblems {
        400 => ["invalid-query", "invalid-limit", "invalid-cursor", "invalid-state"],
        403 => ["admin-required"],
    }
);

/// Proof that the caller's token carries the `admin` scope, and who it is.
pub(crate) struct Admin(pub(crate) crate::ids::UserId);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.admin {
            return Err(admin_required());
        }
        Ok(Self(caller.user))
    }
}

/// `403 admin-required`.
pub(crate) fn admin_required() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "admin-required",
        "this route needs a token with the admin scope",
    )
}

/// Writes every call to the audit log once it is answered.
async fn audited(
    State((state, json_limit)): State<(AppState, usize)>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let admin = super::auth::bearer(&parts.headers)
        .ok()
        .flatten()
        .and_then(|token| state.tokens.verify(token).ok())
        .map_or_else(|| "-".to_owned(), |c| c.user.as_str().to_owned());
    let action = format!(
        "{} {}",
        parts.method,
        parts.uri.path_and_query().map_or("", |p| p.as_str())
    );
    let (response, body) = match axum::body::to_bytes(body, json_limit).await {
        Ok(bytes) => {
            let kept = (!bytes.is_empty()).then(|| {
                String::from_utf8_lossy(&bytes[..bytes.len().min(AUDITED_BODY)]).into_owned()
            });
            let request = Request::from_parts(parts, Body::from(bytes));
            (next.run(request).await, kept)
        }
        Err(_) => (
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "the request body is over the JSON limit",
            )
            .into_response(),
            None,
        ),
    };
    let entry = AuditEntry {
        audit_id: uuid::Uuid::now_v7().to_string(),
        at: now_ms(),
        admin,
        action,
        request: body,
        status: response.status().as_u16(),
    };
    if let Err(e) = state.backends.admin.record_audit(&entry).await {
        tracing::error!(error = %e, action = %entry.action, "could not write the audit log");
    }
    response
}

/// Totals: users, media, contents, bytes (logical, stored, in variants),
/// the dedup ratio, by content type, uploads by state, jobs by state and kind.
#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin",
    responses((status = 200, body = Report), AdminProblems))]
async fn stats(State(state): State<AppState>, _: Admin) -> Result<Json<Value>, ApiError> {
    let s = state.backends.admin.stats().await?;
    let dead: u64 = s
        .jobs
        .iter()
        .filter(|(state, _, _)| state == "dead")
        .map(|(_, _, n)| n)
        .sum();
    Ok(Json(json!({
        "users": s.users,
        "media": s.media,
        "attachments": s.attachments,
        "contents": s.contents,
        "logical_bytes": s.logical_bytes,
        "stored_bytes": s.stored_bytes,
        "variant_bytes": s.variant_bytes,
        "dedup_ratio": if s.stored_bytes == 0 { 1.0 } else { s.logical_bytes as f64 / s.stored_bytes as f64 },
        "by_content_type": s.by_content_type.iter().map(|(t, n, bytes)| {
            json!({"content_type": t, "contents": n, "bytes": bytes})
        }).collect::<Vec<_>>(),
        "uploads": s.uploads_by_state.iter().map(|(state, n)| (state.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "jobs": s.jobs.iter().map(|(state, kind, n)| json!({"state": state, "kind": kind, "count": n})).collect::<Vec<_>>(),
        "dead_jobs": dead,
    })))
}

/// Erases a user: their media, uploads, memberships and messages' content,
/// and the contents no one else references; answers what went.
#[utoipa::path(post, path = "/v1/admin/users/{user}/erase", tag = "admin",
    params(("user" = String, Path, description = "the user id")),
    responses((status = 200, body = Report), EraseProblems))]
async fn erase(
    State(state): State<AppState>,
    _: Admin,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = crate::ids::UserId::parse(&user)
        .map_err(|e| ApiError::bad_request("invalid-user-id", e))?;
    let report = crate::operators::erase::erase_user(&state.backends, &user).await?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

/// One content by its BLAKE3: what it is, who references it (counts by
/// owner and conversation), its variants, and its block.
#[utoipa::path(get, path = "/v1/admin/content/{blake3}", tag = "admin",
    params(("blake3" = String, Path, description = "the content's BLAKE3, hex", pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, body = Report), ContentProblems))]
async fn content(
    State(state): State<AppState>,
    _: Admin,
    Path(blake3): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let blake3 = moderation::blake3_of(&blake3)?;
    let block = state.backends.admin.block_of(&blake3).await?;
    let report = state
        .backends
        .admin
        .content(&blake3)
        .await?
        .ok_or_else(|| {
            ApiError::not_found("content-not-found", "no content with that BLAKE3 is stored")
        })?;
    let variants = state.backends.jobs.variants(&blake3).await?;
    let counts = |list: &[(String, u64)], key: &str| -> Vec<Value> {
        list.iter()
            .map(|(who, n)| json!({ key: who, "count": n }))
            .collect()
    };
    Ok(Json(json!({
        "blake3": blake3.to_hex(),
        "size": report.size,
        "content_type": report.content_type,
        "processing": report.processing,
        "created_at": crate::ids::rfc3339(report.created_at),
        "unreferenced_since": report.unreferenced_since.map(crate::ids::rfc3339),
        "blocked": moderation::block_json(block.as_ref()),
        "media": counts(&report.media_by_owner, "owner"),
        "attachments": counts(&report.attachments_by_conversation, "conversation_id"),
        "variants": variants.iter().map(|v| json!({
            "name": v.preset, "version": v.version, "content_type": v.content_type, "size": v.size,
        })).collect::<Vec<_>>(),
    })))
}

problems!(
    /// What erasing a user may answer.
    EraseProblems { 400 => ["invalid-user-id"], 403 => ["admin-required"] }
);
problems!(
    /// What reading a content may answer.
    ContentProblems {
        400 => ["invalid-blake3"],
        403 => ["admin-required"],
        404 => ["content-not-found"],
    }
);
problems!(
    /// What retrying a job may answer.
    RetryProblems { 403 => ["admin-required"], 404 => ["job-not-found"] }
);

/// A page of an operators' listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// Jobs only: `queued`, `running`, `done`, `dead` (the default) or `paused`.
    state: Option<String>,
    /// Most items (default 50, at most `limits.max_page_size`).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// A page size within the configured bounds (50 unless asked).
pub(super) fn page_size(state: &AppState, limit: Option<u32>) -> Result<u32, ApiError> {
    let max = state.settings.limits.max_page_size;
    crate::ids::page_size(limit, 50, max).ok_or_else(|| {
        ApiError::bad_request("invalid-limit", format!("limit must be from 1 to {max}"))
    })
}

/// The cursor of the next page: the last item's id, when the page is full.
pub(super) fn next_cursor<T>(
    items: &[T],
    limit: u32,
    id: impl Fn(&T) -> &String,
) -> Option<String> {
    (items.len() == limit as usize)
        .then(|| items.last().map(|item| id(item).clone()))
        .flatten()
}

/// The page size and cursor of a listing that takes nothing else.
pub(super) fn plain_page<'q>(
    state: &AppState,
    query: &'q PageQuery,
) -> Result<(u32, Option<&'q str>), ApiError> {
    if query.state.is_some() {
        return Err(ApiError::bad_request(
            "invalid-query",
            "this listing takes limit and cursor",
        ));
    }
    Ok((page_size(state, query.limit)?, cursor(query)?))
}

/// An id cursor: what the listing's ids look like, nothing else.
pub(super) fn cursor(query: &PageQuery) -> Result<Option<&str>, ApiError> {
    match query.cursor.as_deref() {
        Some(c) if c.len() > 64 || !c.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') => Err(
            ApiError::bad_request("invalid-cursor", "not a cursor of this listing"),
        ),
        c => Ok(c),
    }
}

/// Processing jobs in one state (dead ones unless asked), newest first.
#[utoipa::path(get, path = "/v1/admin/jobs", tag = "admin",
    params(PageQuery),
    responses((status = 200, body = Report, description = "`{items, next_cursor}`"), AdminPageProblems))]
async fn jobs(
    State(state): State<AppState>,
    _: Admin,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let job_state = query.state.as_deref().unwrap_or("dead");
    if !["queued", "running", "done", "dead", "paused"].contains(&job_state) {
        return Err(ApiError::bad_request(
            "invalid-state",
            "state must be queued, running, done, dead or paused",
        ));
    }
    let limit = page_size(&state, query.limit)?;
    let items = state
        .backends
        .admin
        .jobs_in_state(job_state, cursor(&query)?, limit)
        .await?;
    let next = next_cursor(&items, limit, |j| &j.job_id);
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

/// Queues a dead job again.
#[utoipa::path(post, path = "/v1/admin/jobs/{job_id}/retry", tag = "admin",
    params(("job_id" = String, Path, description = "the job's id")),
    responses((status = 202, body = Report, description = "`{job_id, state: \"queued\"}`"), RetryProblems))]
async fn retry(
    State(state): State<AppState>,
    _: Admin,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("job-not-found", "no dead job with that id");
    if job_id.len() > 64 {
        return Err(not_found());
    }
    if !state.backends.admin.retry_job(&job_id).await? {
        return Err(not_found());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job_id": job_id, "state": "queued" })),
    )
        .into_response())
}

/// The audit log, newest first: every admin call with who, when, what,
/// its request body and its status.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin",
    params(PageQuery),
    responses((status = 200, body = Report, description = "`{items, next_cursor}`"), AdminPageProblems))]
async fn audit_log(
    State(state): State<AppState>,
    _: Admin,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, cursor) = plain_page(&state, &query)?;
    let items = state.backends.admin.audit_log(cursor, limit).await?;
    let next = next_cursor(&items, limit, |e| &e.audit_id);
    let items: Vec<Value> = items
        .into_iter()
        .map(|e| {
            json!({
                "audit_id": e.audit_id,
                "at": crate::ids::rfc3339(e.at),
                "admin": e.admin,
                "action": e.action,
                "request": e.request.as_deref().map(|r| serde_json::from_str::<Value>(r).unwrap_or(Value::String(r.to_owned()))),
                "status": e.status,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}
