//! Serving the filesystem store's signed download URLs (`GET /blobs/{key}`)
//! the way S3 serves its presigned ones: the signature and expiry checked,
//! then the object (or one range of it), with an ETag for conditional
//! requests. The HTTP layer only turns the outcome into headers.

use super::{Downloads, RangeSpec, parse_range};
use crate::blob_store::signed_url::{SignedParams, UrlError};
use crate::blob_store::{BlobBody, BlobKey, BlobStoreError, ByteRange};

/// The query of a filesystem download URL; every field is checked by the signature.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignedQuery {
    /// Unix seconds after which the URL no longer works.
    #[serde(rename = "x-expires")]
    pub expires: Option<String>,
    /// The `Content-Type` to serve.
    #[serde(rename = "x-type")]
    pub content_type: Option<String>,
    /// The `Content-Disposition` to serve.
    #[serde(rename = "x-disposition")]
    pub disposition: Option<String>,
    /// The entity tag to serve.
    #[serde(rename = "x-etag")]
    pub etag: Option<String>,
    /// The HMAC over all of the above and the key.
    #[serde(rename = "x-signature")]
    pub signature: Option<String>,
}

/// Why a signed download was refused.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// This store does not sign its own URLs (S3 does, at its own endpoint).
    #[error("no such route")]
    NotSigning,
    /// The signature does not verify, or the URL expired.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// No such object.
    #[error("no such object")]
    NotFound,
    /// The range starts past the end.
    #[error("the object is {size} bytes")]
    RangeNotSatisfiable {
        /// The object's size.
        size: u64,
    },
    /// The store failed.
    #[error("blob store: {0}")]
    Blobs(#[source] BlobStoreError),
}

impl From<BlobStoreError> for DownloadError {
    fn from(e: BlobStoreError) -> Self {
        match e {
            BlobStoreError::NotFound => Self::NotFound,
            BlobStoreError::RangeNotSatisfiable { size } => Self::RangeNotSatisfiable { size },
            other => Self::Blobs(other),
        }
    }
}

/// What a verified signed URL serves.
#[derive(Debug)]
pub enum SignedObject {
    /// The client's copy is current (`If-None-Match` matched).
    NotModified(SignedParams),
    /// The bytes: the whole object, or the range asked for.
    Body {
        /// Type, disposition and ETag, as signed.
        params: SignedParams,
        /// The range served, when one was asked for and satisfiable.
        range: Option<ByteRange>,
        /// The bytes.
        body: BlobBody,
    },
}

impl Downloads {
    /// Checks a signed URL and opens what it grants. `if_none_match` and
    /// `range` are the request's headers, as sent.
    pub async fn serve_signed(
        &self,
        key: &str,
        query: SignedQuery,
        if_none_match: Option<&str>,
        range: Option<&str>,
    ) -> Result<SignedObject, DownloadError> {
        let signer = self.url_signer.as_ref().ok_or(DownloadError::NotSigning)?;
        let (Some(expires), Some(content_type), Some(disposition), Some(etag), Some(signature)) = (
            query.expires.and_then(|e| e.parse::<u64>().ok()),
            query.content_type,
            query.disposition,
            query.etag,
            query.signature,
        ) else {
            return Err(UrlError::SignatureInvalid.into());
        };
        let params = SignedParams {
            expires,
            content_type,
            disposition,
            etag,
        };
        signer.verify(key, &params, &signature)?;
        let key = BlobKey::parse(key).map_err(|_| DownloadError::NotFound)?;
        let quoted = format!("\"{}\"", params.etag);
        let not_modified = if_none_match
            .is_some_and(|v| v.split(',').any(|t| t.trim() == quoted || t.trim() == "*"));
        if not_modified {
            return Ok(SignedObject::NotModified(params));
        }
        let range = match range.and_then(parse_range) {
            None => None,
            Some(RangeSpec::From(start, end)) => Some(ByteRange { start, end }),
            Some(RangeSpec::Suffix(n)) => {
                let size = self.blobs.head(&key).await?.unwrap_or(0);
                Some(ByteRange {
                    start: size.saturating_sub(n),
                    end: None,
                })
            }
        };
        let body = self.blobs.get(&key, range).await?;
        Ok(SignedObject::Body {
            params,
            range,
            body,
        })
    }
}
