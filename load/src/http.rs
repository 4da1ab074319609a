//! Talking to the service: tokens, timed requests, latency histograms per
//! endpoint, and errors tallied by status and problem `code`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The service under load.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    authority: Arc<media_api::auth::TokenAuthority>,
    pub(crate) recorder: Recorder,
    /// Media items the run created, with the `Authorization` that owns each:
    /// deleted when the scenario ends, so runs do not fill the store.
    created: Arc<Mutex<Vec<(reqwest::header::HeaderValue, String)>>>,
}

impl Target {
    pub(crate) fn new(base: &str, secret: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
            authority: Arc::new(media_api::auth::TokenAuthority::new(
                &secrecy::SecretString::from(secret.to_owned()),
            )),
            recorder: Recorder::default(),
            created: Arc::default(),
        })
    }

    /// A bearer token for `user`, valid for a day.
    pub(crate) fn token(&self, user: &str) -> anyhow::Result<String> {
        let user = media_api::ids::UserId::parse(user).map_err(anyhow::Error::msg)?;
        self.authority
            .mint(&user, false, Duration::from_secs(86_400))
    }

    /// A token with the `admin` scope, valid for a day.
    pub(crate) fn admin_token(&self, user: &str) -> anyhow::Result<String> {
        let user = media_api::ids::UserId::parse(user).map_err(anyhow::Error::msg)?;
        self.authority
            .mint(&user, true, Duration::from_secs(86_400))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request`, records its latency under `endpoint`, and returns the
    /// status, headers and body; a transport error counts as status 0.
    pub(crate) async fn send(
        &self,
        endpoint: &str,
        request: reqwest::RequestBuilder,
    ) -> Option<(u16, reqwest::header::HeaderMap, bytes::Bytes)> {
        let (client, request) = request.build_split();
        let Ok(request) = request else {
            self.recorder.error(endpoint, 0, "request");
            return None;
        };
        let creates = request.method() == reqwest::Method::POST;
        let owner = request
            .headers()
            .get(reqwest::header::AUTHORIZATION)
            .cloned();
        let start = Instant::now();
        let outcome = match client.execute(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                match response.bytes().await {
                    Ok(body) => Some((status, headers, body)),
                    Err(_) => None,
                }
            }
            Err(_) => None,
        };
        let elapsed = start.elapsed();
        match &outcome {
            Some((status, _, body)) if *status >= 400 => {
                let code = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                self.recorder.error(endpoint, *status, &code);
            }
            Some(_) => self.recorder.latency(endpoint, elapsed),
            None => self.recorder.error(endpoint, 0, "transport"),
        }
        if let (true, Some(owner), Some((200 | 201, _, body))) = (creates, owner, &outcome)
            && let Some(id) = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["media_id"].as_str().map(str::to_owned))
        {
            self.created
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((owner, id));
        }
        outcome
    }

    /// Deletes every media item the run created (after the measurements).
    pub(crate) async fn clean_up(&self) {
        use futures_util::StreamExt;
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        futures_util::stream::iter(created)
            .for_each_concurrent(32, |(owner, id)| async move {
                let _ = self
                    .client
                    .delete(self.url(&format!("/v1/media/{id}")))
                    .header(reqwest::header::AUTHORIZATION, owner)
                    .send()
                    .await;
            })
            .await;
    }
}

#[derive(Debug, Default)]
struct Tallies {
    latencies: BTreeMap<String, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
}

/// Latencies (microseconds) per endpoint and errors per endpoint, status and code.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Tallies>>);

impl Recorder {
    pub(crate) fn latency(&self, endpoint: &str, elapsed: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let h = t
            .latencies
            .entry(endpoint.to_owned())
            .or_insert_with(|| Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds"));
        let _ = h.record(elapsed.as_micros().clamp(1, 600_000_000) as u64);
    }

    pub(crate) fn error(&self, endpoint: &str, status: u16, code: &str) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t.errors
            .entry(format!("{endpoint} {status} {code}"))
            .or_default() += 1;
    }

    /// Forgets everything (after a set-up phase).
    pub(crate) fn reset(&self) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t = Tallies::default();
    }

    pub(crate) fn summary(&self) -> (Vec<EndpointLatency>, BTreeMap<String, u64>) {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let ms = |us: u64| us as f64 / 1000.0;
        let latencies = t
            .latencies
            .iter()
            .map(|(endpoint, h)| EndpointLatency {
                endpoint: endpoint.clone(),
                count: h.len(),
                p50_ms: ms(h.value_at_quantile(0.50)),
                p95_ms: ms(h.value_at_quantile(0.95)),
                p99_ms: ms(h.value_at_quantile(0.99)),
                max_ms: ms(h.max()),
            })
            .collect();
        (latencies, t.errors.clone())
    }
}

/// One endpoint's latency distribution.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EndpointLatency {
    pub(crate) endpoint: String,
    pub(crate) count: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

/// `len` bytes of reproducible noise for `seed` (BLAKE3 as a stream cipher:
/// fast, and distinct seeds give distinct contents, so nothing dedups by accident).
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_derive_key("media-api load noise")
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}
