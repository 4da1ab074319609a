//! The filesystem store's download URLs: signed by this service (HMAC-SHA256
//! over the path and every parameter, with an expiry) the way S3 presigns
//! its own, and checked when `GET /blobs/{key}` serves them.

use std::sync::Arc;

use sha2::Sha256;

/// What a filesystem download URL carries, all covered by its signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedParams {
    /// Unix seconds after which the URL is refused.
    #[serde(rename = "x-expires")]
    pub expires: u64,
    /// The `Content-Type` to answer with.
    #[serde(rename = "x-type")]
    pub content_type: String,
    /// The `Content-Disposition` to answer with.
    #[serde(rename = "x-disposition")]
    pub disposition: String,
    /// The content's BLAKE3, answered as the `ETag`.
    #[serde(rename = "x-etag")]
    pub etag: String,
}

/// Why a filesystem download URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The signature does not cover these parameters (tampered or forged).
    #[error("the URL's signature is invalid")]
    SignatureInvalid,
    /// The URL was valid once and has expired.
    #[error("the URL has expired")]
    Expired,
}

/// Signs and checks the filesystem store's download URLs: HMAC-SHA256 over
/// the path and every parameter, so nothing in the URL can be changed.
#[derive(Clone)]
pub struct UrlSigner {
    key: Arc<[u8]>,
    base: Option<String>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Where the service serves filesystem objects.
pub const SERVE_PREFIX: &str = "/blobs/";

impl UrlSigner {
    /// A signer keyed by `secret`, making URLs under `base` (relative when None).
    pub fn new(secret: &secrecy::SecretString, base: Option<String>) -> Self {
        use secrecy::ExposeSecret;
        Self {
            key: Arc::from(secret.expose_secret().as_bytes()),
            base: base.map(|b| b.trim_end_matches('/').to_owned()),
        }
    }

    fn mac(&self, key: &str, p: &SignedParams) -> hmac::Hmac<Sha256> {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        // Length-prefixed fields: no two parameter sets share a canonical form.
        for field in [
            key,
            &p.expires.to_string(),
            &p.content_type,
            &p.disposition,
            &p.etag,
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac
    }

    /// The URL for `key` with these parameters.
    pub fn sign(&self, key: &str, params: &SignedParams) -> String {
        use hmac::Mac;
        let signature = hex::encode(self.mac(key, params).finalize().into_bytes());
        let query = serde_urlencoded::to_string(params).unwrap_or_default();
        format!(
            "{}{SERVE_PREFIX}{key}?{query}&x-signature={signature}",
            self.base.as_deref().unwrap_or("")
        )
    }

    /// Checks a URL's signature, then its expiry.
    pub fn verify(
        &self,
        key: &str,
        params: &SignedParams,
        signature: &str,
    ) -> Result<(), UrlError> {
        use hmac::Mac;
        let given = hex::decode(signature).map_err(|_| UrlError::SignatureInvalid)?;
        self.mac(key, params)
            .verify_slice(&given)
            .map_err(|_| UrlError::SignatureInvalid)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if now >= params.expires {
            return Err(UrlError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new(&secrecy::SecretString::from("k".repeat(32)), None)
    }

    fn params(expires: u64) -> SignedParams {
        SignedParams {
            expires,
            content_type: "image/jpeg".into(),
            disposition: "inline; filename=\"a.jpg\"".into(),
            etag: "ab".repeat(32),
        }
    }

    #[test]
    fn signed_urls_verify_and_nothing_in_them_can_change() {
        let s = signer();
        let far = 4_000_000_000;
        let url = s.sign("o/ab/x", &params(far));
        assert!(
            url.starts_with("/blobs/o/ab/x?x-expires=4000000000&"),
            "{url}"
        );
        let sig = url.rsplit("x-signature=").next().expect("signature");
        assert_eq!(s.verify("o/ab/x", &params(far), sig), Ok(()));
        assert_eq!(
            s.verify("o/ab/y", &params(far), sig),
            Err(UrlError::SignatureInvalid)
        );
        assert_eq!(
            s.verify("o/ab/x", &params(far + 1), sig),
            Err(UrlError::SignatureInvalid)
        );
        let mut changed = params(far);
        changed.content_type = "text/html".into();
        assert_eq!(
            s.verify("o/ab/x", &changed, sig),
            Err(UrlError::SignatureInvalid)
        );
        assert_eq!(
            s.verify("o/ab/x", &params(far), "zz"),
            Err(UrlError::SignatureInvalid)
        );
        let other = UrlSigner::new(&secrecy::SecretString::from("j".repeat(32)), None);
        assert_eq!(
            other.verify("o/ab/x", &params(far), sig),
            Err(UrlError::SignatureInvalid)
        );
    }

    #[test]
    fn expired_urls_are_refused_after_the_signature_checks() {
        let s = signer();
        let url = s.sign("o/ab/x", &params(1));
        let sig = url.rsplit("x-signature=").next().expect("signature");
        assert_eq!(s.verify("o/ab/x", &params(1), sig), Err(UrlError::Expired));
    }

    #[test]
    fn the_same_parameters_sign_to_the_same_url() {
        let s = signer();
        assert_eq!(s.sign("o/x", &params(99)), s.sign("o/x", &params(99)));
        let based = UrlSigner::new(
            &secrecy::SecretString::from("k".repeat(32)),
            Some("http://h:1/".into()),
        );
        assert!(
            based
                .sign("o/x", &params(99))
                .starts_with("http://h:1/blobs/o/x?")
        );
    }
}
