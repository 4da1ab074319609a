//! The request extractor for the authenticated caller: the bearer token
//! from the `Authorization` header, checked by the [`TokenAuthority`].

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::problem::ApiError;
use crate::auth::{AuthError, Caller, TokenAuthority};

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    TokenAuthority: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let authority = <TokenAuthority as axum::extract::FromRef<S>>::from_ref(state);
        let token = bearer(&parts.headers)?.ok_or(AuthError::Missing)?;
        Ok(authority.verify(token)?)
    }
}

/// The bearer token of the `Authorization` header, if there is one.
pub(super) fn bearer(headers: &axum::http::HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(header) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    header
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or_else(|| {
            AuthError::Malformed("the Authorization header must be `Bearer <token>`".into())
        })
}

/// Whether the request's bearer token carries the `admin` scope: `Ok(false)`
/// without a token, an error for a bad one.
pub(super) fn admin_of(
    headers: &axum::http::HeaderMap,
    tokens: &TokenAuthority,
) -> Result<bool, AuthError> {
    match bearer(headers)? {
        None => Ok(false),
        Some(token) => Ok(tokens.verify(token)?.admin),
    }
}
