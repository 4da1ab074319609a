//! Bearer-JWT authentication: HS256 tokens whose `sub` is the user id and
//! whose space-separated `scope` may hold `admin`. Free of HTTP: the
//! request extractor is `http::auth`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::ids::UserId;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    /// Not valid before (checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// Seconds of clock difference between the token's issuer and us that are
/// forgiven on `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: u64 = 5;

/// The longest a token may be valid (`exp - iat`) unless configured.
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Why a bearer token was refused. Each maps to one problem `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("an Authorization: Bearer token is required")]
    Missing,
    /// Not `Bearer <JWT>`, or claims we cannot read.
    #[error("{0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("the bearer token's signature does not verify")]
    Invalid,
    /// Past its `exp`.
    #[error("the bearer token has expired")]
    Expired,
    /// Its `nbf` or `iat` is still to come.
    #[error("the bearer token is not valid yet (its nbf or iat is in the future)")]
    NotYetValid,
    /// Valid for longer than this service accepts (`exp - iat`).
    #[error("the bearer token is valid for longer than the {0} s this service accepts")]
    LifetimeTooLong(u64),
}

impl AuthError {
    /// The stable problem code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "token-missing",
            Self::Malformed(_) => "token-malformed",
            Self::Invalid => "token-invalid",
            Self::Expired => "token-expired",
            Self::NotYetValid => "token-not-yet-valid",
            Self::LifetimeTooLong(_) => "token-lifetime-too-long",
        }
    }
}

/// Signs and checks tokens with one HMAC secret.
#[derive(Clone)]
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    max_lifetime: Duration,
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
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }

    /// The same authority accepting tokens valid for at most `max`.
    pub fn with_max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// The longest a token it accepts may be valid.
    pub fn max_lifetime(&self) -> Duration {
        self.max_lifetime
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
            sub: user.as_str().to_owned(),
            iat: now,
            exp: now + ttl.as_secs().max(1),
            nbf: None,
            scope: admin.then(|| "admin".to_owned()),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Checks a token; the error says which check failed.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::Invalid,
                _ => AuthError::Malformed(format!("the bearer token is not a valid JWT: {e}")),
            })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if data.claims.iat > now + LEEWAY_SECONDS {
            return Err(AuthError::NotYetValid);
        }
        let lifetime = data.claims.exp.saturating_sub(data.claims.iat);
        if lifetime > self.max_lifetime.as_secs() {
            return Err(AuthError::LifetimeTooLong(self.max_lifetime.as_secs()));
        }
        let user = UserId::parse(&data.claims.sub).map_err(AuthError::Malformed)?;
        let admin = data
            .claims
            .scope
            .as_deref()
            .is_some_and(|s| s.split_whitespace().any(|s| s == "admin"));
        Ok(Caller {
            user,
            admin,
            expires_at: data.claims.exp,
        })
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who is calling.
    pub user: UserId,
    /// Whether the token carries the `admin` scope.
    pub admin: bool,
    /// When the token expires (Unix seconds): a long-lived connection
    /// ends then.
    pub expires_at: u64,
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
        let later = SystemTime::now() + Duration::from_secs(120);
        let early = a
            .mint_at(&user, false, later, Duration::from_secs(60))
            .expect("mints");
        assert_eq!(
            a.verify(&early).map(|_| ()).unwrap_err().code(),
            "token-not-yet-valid"
        );
        let long = a
            .mint(&user, false, Duration::from_secs(24 * 3600 + 1))
            .expect("mints");
        assert_eq!(
            a.verify(&long).map(|_| ()).unwrap_err().code(),
            "token-lifetime-too-long"
        );
        let short = a.clone().with_max_lifetime(Duration::from_secs(30));
        let minute = a
            .mint(&user, false, Duration::from_secs(60))
            .expect("mints");
        assert!(short.verify(&minute).is_err());
    }
}
