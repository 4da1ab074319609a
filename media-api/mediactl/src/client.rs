//! Talking to the service: requests with the bearer token, and its
//! `application/problem+json` refusals turned into what a person reads.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

/// Why a command did not do what it was asked.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command line or its input was wrong.
    Usage(String),
    /// The service refused: a 4xx problem.
    Refused {
        /// HTTP status.
        status: u16,
        /// The problem's stable code.
        code: String,
        /// Its title.
        title: String,
        /// What went wrong.
        detail: String,
    },
    /// The service failed or did not answer.
    Unavailable(String),
    /// Ctrl-C.
    Interrupted(String),
    /// Something here: a file, the state file.
    Local(String),
}

impl Failure {
    /// The process's exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Local(_) => 1,
            Self::Usage(_) => 2,
            Self::Refused { .. } => 3,
            Self::Unavailable(_) => 4,
            Self::Interrupted(_) => 130,
        }
    }

    /// A problem's code, when the service refused.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A failure worth trying again (the network, the service's side).
    pub(crate) fn retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
            || matches!(
                self,
                Self::Refused {
                    status: 408 | 429,
                    ..
                }
            )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) | Self::Local(m) | Self::Interrupted(m) => f.write_str(m),
            Self::Unavailable(m) => write!(f, "the service is unavailable: {m}"),
            Self::Refused {
                code,
                title,
                detail,
                ..
            } => write!(f, "{title} ({code}): {detail}"),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Local(e.to_string())
    }
}

fn unavailable(e: &reqwest::Error) -> Failure {
    // The chain, without a debug dump: "error sending request: connection refused".
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    Failure::Unavailable(text)
}

/// The service at one URL, with one token.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    /// A client of the service at `base`.
    pub(crate) fn new(base: &str, token: Option<String>) -> Result<Self, Failure> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::Usage(format!(
                "--url must be an http:// or https:// URL, not {base:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Failure::Local(e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// An absolute URL for a path of the service, or a URL it answered.
    pub(crate) fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    /// A request to the service, with the token.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// A request to a URL the service handed out (a presigned download):
    /// no token, the URL is the grant.
    pub(crate) fn fetch(&self, url: &str) -> RequestBuilder {
        self.http.get(self.url(url))
    }

    /// `GET`.
    pub(crate) fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// `POST`.
    pub(crate) fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// `DELETE`.
    pub(crate) fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// Sends; a 2xx (or 3xx) answer is the caller's, anything else a failure.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Response, Failure> {
        if self.token.is_none() {
            return Err(Failure::Usage(
                "no token: pass --token or set MEDIA_TOKEN (media-api token --user USER mints one)"
                    .into(),
            ));
        }
        let response = request.send().await.map_err(|e| unavailable(&e))?;
        checked(response).await
    }

    /// Sends and reads the JSON answer.
    pub(crate) async fn json(&self, request: RequestBuilder) -> Result<Value, Failure> {
        let response = self.send(request).await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        response.json().await.map_err(|e| unavailable(&e))
    }
}

/// The answer if it is a success; its problem as a [`Failure`] if not.
pub(crate) async fn checked(response: Response) -> Result<Response, Failure> {
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        return Ok(response);
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    let title = match field("title") {
        t if t.is_empty() => status.canonical_reason().unwrap_or("Error").to_owned(),
        t => t,
    };
    let detail = field("detail");
    if status.is_server_error() {
        return Err(Failure::Unavailable(format!("{title}: {detail}")));
    }
    Err(Failure::Refused {
        status: status.as_u16(),
        code: match field("code") {
            c if c.is_empty() => status.as_u16().to_string(),
            c => c,
        },
        title,
        detail,
    })
}
