//! Bearer-JWT authentication: HS256 tokens whose `sub` is the user id and
//! whose space-separated `scope` may hold `admin`.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;

/// A user id: the token's `sub`. Opaque to us, but bounded and printable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// Accepts 1 to 128 bytes with no control characters.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() || value.len() > 128 {
            return Err("a user id is 1 to 128 bytes".into());
        }
        if value.chars().any(char::is_control) {
            return Err("a user id has no control characters".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<UserId> for String {
    fn from(value: UserId) -> String {
        value.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// Signs and checks tokens with one HMAC secret.
#[derive(Clone)]
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenAuthority([REDACTED])")
    }
}

impl TokenAuthority {
    /// An authority over the given secret.
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        }
    }

    /// Mints a token for `user`, valid for `ttl` from now.
    pub fn mint(&self, user: &UserId, admin: bool, ttl: Duration) -> anyhow::Result<String> {
        self.mint_at(user, admin, SystemTime::now(), ttl)
    }

    /// Mints a token as if issued at `issued` (tests use it for expired tokens).
    pub fn mint_at(
        &self,
        user: &UserId,
        admin: bool,
        issued: SystemTime,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let now = issued.duration_since(UNIX_EPOCH)?.as_secs();
        let claims = Claims {
            sub: user.0.clone(),
            iat: now,
            exp: now + ttl.as_secs().max(1),
            scope: admin.then(|| "admin".to_owned()),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Checks a token; the error says which check failed.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized("token-expired", "the bearer token has expired")
                }
                ErrorKind::InvalidSignature => ApiError::unauthorized(
                    "token-invalid",
                    "the bearer token's signature does not verify",
                ),
                _ => ApiError::unauthorized(
                    "token-malformed",
                    format!("the bearer token is not a valid JWT: {e}"),
                ),
            })?;
        let user = UserId::parse(&data.claims.sub)
            .map_err(|why| ApiError::unauthorized("token-malformed", why))?;
        let admin = data
            .claims
            .scope
            .as_deref()
            .is_some_and(|s| s.split_whitespace().any(|s| s == "admin"));
        Ok(Caller { user, admin })
    }
}

/// The JWT secret from the settings, or one generated once and kept in the
/// data dir (mode 0600) so tokens survive restarts.
pub fn load_or_create_secret(
    configured: Option<&SecretString>,
    data_dir: &Path,
) -> anyhow::Result<SecretString> {
    load_or_create_secret_file(configured, data_dir, "jwt-secret")
}

/// A configured secret, or one generated once into `data_dir/file_name`.
pub fn load_or_create_secret_file(
    configured: Option<&SecretString>,
    data_dir: &Path,
    file_name: &str,
) -> anyhow::Result<SecretString> {
    use anyhow::Context;
    if let Some(secret) = configured {
        return Ok(secret.clone());
    }
    let path = data_dir.join(file_name);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(SecretString::from(s.trim().to_owned())),
        Ok(_) => anyhow::bail!("{} is too short; delete it to regenerate", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("while reading {}", path.display())),
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("while creating data dir {}", data_dir.display()))?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let secret = hex::encode(raw);
    write_private(&path, &secret)?;
    tracing::info!(path = %path.display(), "generated a secret");
    Ok(SecretString::from(secret))
}

/// Writes a file only its owner can read, atomically: a concurrent reader
/// sees the whole secret or none.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("while creating {}", tmp.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    // Another process may have won the race to create it; keep theirs.
    if path.exists() {
        std::fs::remove_file(&tmp)?;
        return Ok(());
    }
    std::fs::rename(&tmp, path).with_context(|| format!("while writing {}", path.display()))
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who is calling.
    pub user: UserId,
    /// Whether the token carries the `admin` scope.
    pub admin: bool,
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    TokenAuthority: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let authority = <TokenAuthority as axum::extract::FromRef<S>>::from_ref(state);
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "token-missing",
                "an Authorization: Bearer token is required",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "token-malformed",
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        authority.verify(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(secret: &str) -> TokenAuthority {
        TokenAuthority::new(&SecretString::from(secret.to_owned()))
    }

    #[test]
    fn minted_tokens_verify_with_their_scope() {
        let a = authority("0123456789abcdef0123456789abcdef");
        let user = UserId::parse("alice").expect("valid");
        let token = a.mint(&user, true, Duration::from_secs(60)).expect("mints");
        let caller = a.verify(&token).expect("verifies");
        assert_eq!(caller.user, user);
        assert!(caller.admin);
        let token = a
            .mint(&user, false, Duration::from_secs(60))
            .expect("mints");
        assert!(!a.verify(&token).expect("verifies").admin);
    }

    #[test]
    fn each_failure_has_its_code() {
        let a = authority("0123456789abcdef0123456789abcdef");
        let b = authority("fedcba9876543210fedcba9876543210");
        let user = UserId::parse("bob").expect("valid");
        let token = b
            .mint(&user, false, Duration::from_secs(60))
            .expect("mints");
        assert_eq!(
            a.verify(&token).map(|_| ()).unwrap_err().code(),
            "token-invalid"
        );
        assert_eq!(
            a.verify("abc.def").map(|_| ()).unwrap_err().code(),
            "token-malformed"
        );
    }

    #[test]
    fn user_ids_are_bounded() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"x".repeat(129)).is_err());
        assert!(UserId::parse("a\nb").is_err());
        assert!(UserId::parse("user-42@example").is_ok());
    }

    #[test]
    fn generated_secret_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_secret(None, dir.path()).expect("creates");
        let second = load_or_create_secret(None, dir.path()).expect("reads");
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert_eq!(first.expose_secret().len(), 64);
    }
}
