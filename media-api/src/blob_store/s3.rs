//! The S3 blob store (Garage locally, any S3 API in production).
//!
//! Parts are sent with their SHA-256 in `x-amz-checksum-sha256` and SigV4
//! payload signing off: we hashed the bytes already, and the store verifies
//! the checksum itself. The SDK's own default request checksums (CRC32 on every
//! upload) are turned off for the same reason.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart as S3CompletedPart};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{
    BlobBody, BlobKey, BlobStore, BlobStoreError, ByteRange, CompletedPart, ListedObject,
    MultipartId, PartBody, PendingMultipart, PresignRequest,
};
use crate::config::S3Location;

/// Objects in one S3 bucket, under an optional key prefix.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3BlobStore {
    /// A store configured by the AWS SDK's standard environment
    /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …).
    pub async fn from_env(location: S3Location, force_path_style: bool) -> anyhow::Result<Self> {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        if shared.region().is_none() {
            anyhow::bail!("MEDIA_BLOB_STORE is S3, but AWS_REGION is not set");
        }
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(Self {
            client: Client::from_conf(config),
            bucket: location.bucket,
            prefix: location.prefix,
        })
    }

    /// The S3 client, for the benchmark baseline and tests.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn full_key(&self, key: &BlobKey) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    fn strip_prefix<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.prefix)
    }
}

/// Sorts an SDK error into ours: unreachable, a named service error, or other.
fn classify<E>(err: SdkError<E>) -> BlobStoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            BlobStoreError::Unavailable(aws_sdk_s3::error::DisplayErrorContext(&err).to_string())
        }
        SdkError::ServiceError(service) => match service.err().code() {
            Some("NoSuchKey" | "NotFound") => BlobStoreError::NotFound,
            Some("NoSuchUpload") => BlobStoreError::NoSuchUpload,
            Some("InvalidRange") => BlobStoreError::RangeNotSatisfiable { size: 0 },
            _ if service.raw().status().as_u16() == 404 => BlobStoreError::NotFound,
            _ => BlobStoreError::Other(aws_sdk_s3::error::DisplayErrorContext(&err).to_string()),
        },
        _ => BlobStoreError::Other(aws_sdk_s3::error::DisplayErrorContext(&err).to_string()),
    }
}

/// S3's answers for a part that is not what its checksum or ETag says.
fn as_invalid_part(err: BlobStoreError, part: Option<u32>) -> BlobStoreError {
    match err {
        BlobStoreError::Other(msg)
            if [
                "InvalidPart",
                "BadDigest",
                "InvalidDigest",
                "XAmzContentChecksumMismatch",
            ]
            .iter()
            .any(|code| msg.contains(code)) =>
        {
            BlobStoreError::InvalidPart { part, reason: msg }
        }
        other => other,
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn ping(&self) -> Result<(), BlobStoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match classify(e) {
                BlobStoreError::NotFound => {
                    BlobStoreError::Unavailable(format!("bucket {} does not exist", self.bucket))
                }
                other => BlobStoreError::Unavailable(other.to_string()),
            })
    }

    fn min_part_size(&self) -> u64 {
        5 * 1024 * 1024
    }

    async fn list_parts(
        &self,
        key: &BlobKey,
        upload: &MultipartId,
    ) -> Result<Vec<(u32, String)>, BlobStoreError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .upload_id(&upload.0)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(classify)?;
            for part in out.parts() {
                if let (Some(n), Some(etag)) = (part.part_number(), part.e_tag()) {
                    parts.push((u32::try_from(n).unwrap_or(0), etag.to_owned()));
                }
            }
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        parts.sort();
        Ok(parts)
    }

    async fn put(&self, key: &BlobKey, data: Bytes) -> Result<(), BlobStoreError> {
        use sha2::Digest;
        let sha = sha2::Sha256::digest(&data);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_length(i64::try_from(data.len()).unwrap_or(i64::MAX))
            .checksum_sha256(BASE64.encode(sha))
            .body(ByteStream::from(data))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn get(
        &self,
        key: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, BlobStoreError> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key));
        if let Some(r) = range {
            request = request.range(match r.end {
                Some(end) => format!("bytes={}-{end}", r.start),
                None => format!("bytes={}-", r.start),
            });
        }
        let out = match request.send().await.map_err(classify) {
            Err(BlobStoreError::RangeNotSatisfiable { .. }) => {
                let size = self.head(key).await?.ok_or(BlobStoreError::NotFound)?;
                return Err(BlobStoreError::RangeNotSatisfiable { size });
            }
            other => other?,
        };
        let len = u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0);
        // `Content-Range: bytes a-b/total` tells the whole size of a ranged read.
        let total = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or(len);
        let reader = out.body.into_async_read();
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024).boxed();
        Ok(BlobBody { len, total, stream })
    }

    async fn head(&self, key: &BlobKey) -> Result<Option<u64>, BlobStoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(classify)
        {
            Ok(out) => Ok(Some(
                u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0),
            )),
            Err(BlobStoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobStoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| match classify(e) {
                BlobStoreError::NotFound => Ok(()),
                other => Err(other),
            })
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListedObject>, BlobStoreError> {
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}{prefix}", self.prefix))
            .max_keys(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000));
        if let Some(after) = after {
            request = request.start_after(format!("{}{after}", self.prefix));
        }
        let page = request.send().await.map_err(classify)?;
        Ok(page
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key().and_then(|k| self.strip_prefix(k))?;
                Some(ListedObject {
                    key: key.to_owned(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    modified_ms: o.last_modified().map_or(0, |t| t.to_millis().unwrap_or(0)),
                })
            })
            .collect())
    }

    async fn rename(&self, from: &BlobKey, to: &BlobKey) -> Result<(), BlobStoreError> {
        // A server-side copy (objects up to 5 GiB), then the old key goes.
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{}", self.bucket, self.full_key(from)))
            .key(self.full_key(to))
            .send()
            .await
            .map_err(classify)?;
        self.delete(from).await
    }

    async fn create_multipart(&self, key: &BlobKey) -> Result<MultipartId, BlobStoreError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(classify)?;
        out.upload_id()
            .map(|id| MultipartId(id.to_owned()))
            .ok_or_else(|| BlobStoreError::Other("CreateMultipartUpload returned no id".into()))
    }

    async fn upload_part(
        &self,
        key: &BlobKey,
        upload: &MultipartId,
        number: u32,
        data: PartBody,
        sha256: [u8; 32],
    ) -> Result<String, BlobStoreError> {
        let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
        // The frames go out as they came in (hyper writes them with writev);
        // a retry rebuilds the body from cheap clones of them.
        let body =
            SdkBody::retryable(move || SdkBody::from_body_1_x(data.clone().into_http_body()));
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .upload_id(&upload.0)
            .part_number(
                i32::try_from(number).map_err(|_| BlobStoreError::InvalidPart {
                    part: Some(number),
                    reason: "part numbers stop at 10,000".into(),
                })?,
            )
            .content_length(len)
            .checksum_sha256(BASE64.encode(sha256))
            .body(ByteStream::new(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| as_invalid_part(classify(e), Some(number)))?;
        out.e_tag()
            .map(str::to_owned)
            .ok_or_else(|| BlobStoreError::Other("UploadPart returned no ETag".into()))
    }

    async fn complete_multipart(
        &self,
        key: &BlobKey,
        upload: &MultipartId,
        parts: &[CompletedPart],
    ) -> Result<(), BlobStoreError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        S3CompletedPart::builder()
                            .part_number(i32::try_from(p.number).unwrap_or(i32::MAX))
                            .e_tag(&p.etag)
                            .checksum_sha256(BASE64.encode(p.sha256))
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .upload_id(&upload.0)
            .multipart_upload(completed)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| as_invalid_part(classify(e), None))
    }

    async fn abort_multipart(
        &self,
        key: &BlobKey,
        upload: &MultipartId,
    ) -> Result<(), BlobStoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .upload_id(&upload.0)
            .send()
            .await
            .map(|_| ())
            .or_else(|e| match classify(e) {
                BlobStoreError::NoSuchUpload | BlobStoreError::NotFound => Ok(()),
                other => Err(other),
            })
    }

    async fn list_multipart(&self) -> Result<Vec<PendingMultipart>, BlobStoreError> {
        let mut pending = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(classify)?;
            for upload in out.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id())
                    && let Some(key) = self.strip_prefix(key)
                {
                    pending.push(PendingMultipart {
                        key: key.to_owned(),
                        id: MultipartId(id.to_owned()),
                        initiated_ms: upload.initiated().and_then(|t| t.to_millis().ok()),
                    });
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(pending);
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            id_marker = out.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(pending);
            }
        }
    }

    async fn presign_get(
        &self,
        key: &BlobKey,
        request: &PresignRequest<'_>,
    ) -> Result<String, BlobStoreError> {
        let config = aws_sdk_s3::presigning::PresigningConfig::builder()
            .start_time(request.start)
            .expires_in(request.expires_in)
            .build()
            .map_err(|e| BlobStoreError::Other(e.to_string()))?;
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .response_content_type(request.content_type)
            .response_content_disposition(request.content_disposition)
            .presigned(config)
            .await
            .map_err(classify)?;
        Ok(presigned.uri().to_owned())
    }
}
