//! Layered configuration: built-in defaults, then an optional TOML file
//! (`--config PATH`), then `MEDIA_*` environment variables.
//!
//! Nested settings are reached from the environment with a double underscore:
//! `MEDIA_LIMITS__MAX_FILE_SIZE=20GiB` sets `[limits] max_file_size`.
//! Secrets are [`SecretString`]s, so `Debug` and logs never show them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

mod sections;
mod units;

pub use sections::{
    ChatSettings, JobSettings, Limits, LogFormat, Presets, Quotas, RealtimeSettings, SandboxMode,
};
use units::KIB;
pub use units::{ByteSize, S3Location};

/// Everything the service reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP API listens on (`MEDIA_LISTEN`).
    pub listen: SocketAddr,
    /// Directory for the embedded backends: the SQLite file, the filesystem
    /// blob store and generated secrets (`MEDIA_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Metadata store. Unset: SQLite in the data dir. `postgres://…`: PostgreSQL
    /// (`MEDIA_DATABASE_URL`). Secret, because URLs carry passwords.
    #[serde(serialize_with = "ser_secret_opt")]
    pub database_url: Option<SecretString>,
    /// Most connections the metadata store pool opens.
    pub database_max_connections: u32,
    /// Progress and events. Unset: in-process. `redis://…`: Redis (`MEDIA_REDIS_URL`).
    #[serde(serialize_with = "ser_secret_opt")]
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key and channel, so several deployments (or tests)
    /// can share one Redis.
    pub redis_namespace: String,
    /// Blob store. Unset: the filesystem under the data dir. `s3://BUCKET[/PREFIX]`:
    /// S3, configured by the AWS SDK's standard variables (`MEDIA_BLOB_STORE`).
    pub blob_store: Option<String>,
    /// Use path-style S3 addressing (`http://host/bucket/key`), as Garage and MinIO need.
    pub s3_force_path_style: bool,
    /// HMAC secret for bearer JWTs (`MEDIA_JWT_SECRET`). Unset: generated once
    /// and kept in the data dir, so tokens survive restarts.
    #[serde(serialize_with = "ser_secret_opt")]
    pub jwt_secret: Option<SecretString>,
    /// HMAC secret for the filesystem store's signed download URLs
    /// (`MEDIA_URL_SIGNING_SECRET`). Unset: generated once into the data dir.
    #[serde(serialize_with = "ser_secret_opt")]
    pub url_signing_secret: Option<SecretString>,
    /// Where clients reach this service, such as `https://media.example.com`;
    /// prefixes the filesystem store's download URLs (unset: relative URLs).
    pub public_base_url: Option<String>,
    /// A CDN edge that fronts the blob store, such as `https://cdn.example.com`:
    /// download URLs point at it instead of the store (same path and query).
    pub cdn_base_url: Option<String>,
    /// Download URLs are signed per window of this length and stay valid until
    /// the end of the next one, so one media asked twice in a window gets the
    /// identical URL and edges keyed on it hit their cache.
    #[serde(with = "humantime_serde")]
    pub download_url_window: Duration,
    /// Most download URLs kept signed for the rest of their window (each
    /// 400–550 bytes); 0 signs every redirect afresh.
    pub download_url_cache: usize,
    /// The longest a bearer token may be valid (`exp - iat`).
    #[serde(with = "humantime_serde")]
    pub max_token_lifetime: Duration,
    /// Origins browsers may call the API from (`*` allows any). The web
    /// client at `/` may also be framed by these (a host app that hands it
    /// a token).
    pub cors_origins: Vec<String>,
    /// The development sign-in (`POST /dev/sign-in`: a user name in, a
    /// token out, no password) that the web client offers (`MEDIA_DEV_SIGN_IN`).
    /// Unset: on for the embedded default only, with a warning in the log at
    /// start; off (`403 dev-sign-in-disabled`) on any other backend unless
    /// set to `true`. Never on for a service strangers can reach.
    pub dev_sign_in: Option<bool>,
    /// Deadline for an ordinary API request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Deadline for a request that carries upload bytes (a chunk or a one-request
    /// upload), which on a slow mobile link takes much longer than a JSON call.
    #[serde(with = "humantime_serde")]
    pub upload_request_timeout: Duration,
    /// How long in-flight requests get to finish after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Longest a connection may take to send a request's headers (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Most HTTP connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How often the janitor looks for expired upload sessions, abandoned
    /// completions and orphan multipart uploads.
    #[serde(with = "humantime_serde")]
    pub janitor_interval: Duration,
    /// How long a content nobody references is kept before the GC deletes
    /// it (a new reference in that time keeps it), and how old a multipart
    /// upload no session names must be before the janitor aborts it.
    #[serde(with = "humantime_serde")]
    pub gc_grace: Duration,
    /// How often the GC looks for unreferenced contents.
    #[serde(with = "humantime_serde")]
    pub gc_interval: Duration,
    /// Log output: `text` or `json`.
    pub log_format: LogFormat,
    /// Size, count and time limits.
    pub limits: Limits,
    /// The processing queue and its workers.
    pub jobs: JobSettings,
    /// What derivatives are made.
    pub presets: Presets,
    /// The messaging core's limits.
    pub chat: ChatSettings,
    /// The realtime gateway's limits and clocks.
    pub realtime: RealtimeSettings,
    /// What one user may store and do.
    pub quotas: Quotas,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 16,
            redis_url: None,
            redis_namespace: "media".into(),
            blob_store: None,
            s3_force_path_style: true,
            jwt_secret: None,
            url_signing_secret: None,
            public_base_url: None,
            cdn_base_url: None,
            download_url_window: Duration::from_secs(3600),
            download_url_cache: 20_000,
            max_token_lifetime: Duration::from_secs(24 * 3600),
            cors_origins: Vec::new(),
            dev_sign_in: None,
            request_timeout: Duration::from_secs(30),
            upload_request_timeout: Duration::from_secs(15 * 60),
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            janitor_interval: Duration::from_secs(60),
            gc_grace: Duration::from_secs(24 * 3600),
            gc_interval: Duration::from_secs(60),
            log_format: LogFormat::Text,
            limits: Limits::default(),
            jobs: JobSettings::default(),
            presets: Presets::default(),
            chat: ChatSettings::default(),
            realtime: RealtimeSettings::default(),
            quotas: Quotas::default(),
        }
    }
}

/// A configuration error that names the setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Defaults, then the TOML file if given, then `MEDIA_*` variables from the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        // `MEDIA_URL` and `MEDIA_TOKEN` are mediactl's (the client beside
        // this service), never settings of the service.
        let env = Env::prefixed("MEDIA_")
            .ignore(&["URL", "TOKEN"])
            .split("__");
        Self::load_from(config_file, env)
    }

    /// As [`Settings::load`], with an explicit environment provider (tests use this).
    pub fn load_from(config_file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "--config {}: no such file",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let settings: Settings = figment.merge(env).extract().map_err(describe)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |setting: &str, why: String| Err(ConfigError(format!("{setting}: {why}")));
        if let Some(url) = &self.database_url {
            let url = url.expose_secret();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return bad(
                    "MEDIA_DATABASE_URL (database_url)",
                    "expected a postgres:// URL, or leave it unset for the embedded SQLite store"
                        .into(),
                );
            }
        }
        if let Some(url) = &self.redis_url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return bad(
                    "MEDIA_REDIS_URL (redis_url)",
                    "expected a redis:// URL, or leave it unset for in-process progress".into(),
                );
            }
        }
        if let Some(store) = &self.blob_store
            && let Err(why) = S3Location::parse(store)
        {
            return bad("MEDIA_BLOB_STORE (blob_store)", why);
        }
        if let Some(secret) = &self.jwt_secret
            && secret.expose_secret().len() < 32
        {
            return bad(
                "MEDIA_JWT_SECRET (jwt_secret)",
                "must be at least 32 bytes long".into(),
            );
        }
        if let Some(secret) = &self.url_signing_secret
            && secret.expose_secret().len() < 32
        {
            return bad(
                "MEDIA_URL_SIGNING_SECRET (url_signing_secret)",
                "must be at least 32 bytes long".into(),
            );
        }
        for (setting, url) in [
            (
                "MEDIA_PUBLIC_BASE_URL (public_base_url)",
                &self.public_base_url,
            ),
            ("MEDIA_CDN_BASE_URL (cdn_base_url)", &self.cdn_base_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return bad(
                    setting,
                    format!("{url:?} must be an http:// or https:// URL"),
                );
            }
        }
        // SigV4 presigned URLs live at most 7 days; ours live up to two windows.
        if self.max_token_lifetime.as_secs() == 0 {
            return bad(
                "MEDIA_MAX_TOKEN_LIFETIME (max_token_lifetime)",
                "must be at least one second".into(),
            );
        }
        if self.download_url_window.is_zero()
            || self.download_url_window > Duration::from_secs(302_400)
        {
            return bad(
                "MEDIA_DOWNLOAD_URL_WINDOW (download_url_window)",
                "must be more than zero and at most 3.5 days".into(),
            );
        }
        if self.download_url_cache > 10_000_000 {
            return bad(
                "MEDIA_DOWNLOAD_URL_CACHE (download_url_cache)",
                "must be at most 10,000,000 URLs".into(),
            );
        }
        if self.jobs.max_attempts == 0 || self.jobs.lease.is_zero() || self.jobs.timeout.is_zero() {
            return bad(
                "MEDIA_JOBS__* (jobs)",
                "max_attempts, lease and timeout must be more than zero".into(),
            );
        }
        let l = &self.limits;
        if l.inflight_memory_per_user.0 > l.inflight_memory.0
            || l.inflight_memory_per_user.0 < l.max_chunk_size.0
            || l.min_body_rate.0 == 0
        {
            return bad(
                "MEDIA_LIMITS__INFLIGHT_MEMORY_PER_USER (limits.inflight_memory_per_user)",
                "must be at least max_chunk_size and at most inflight_memory, and \
                 min_body_rate more than zero"
                    .into(),
            );
        }
        let q = &self.quotas;
        if q.open_uploads == 0
            || q.media_per_hour == 0
            || q.messages_per_minute == 0
            || q.upload_bytes_per_hour.0 == 0
            || q.stored_bytes.0 == 0
        {
            return bad(
                "MEDIA_QUOTAS__* (quotas)",
                "every quota must be more than zero".into(),
            );
        }
        let chat = &self.chat;
        if chat.max_group_members < 2
            || chat.max_text_bytes == 0
            || chat.max_title_chars == 0
            || chat.max_forward_targets == 0
            || chat.max_history_page == 0
            || chat.max_sync_page == 0
            || chat.sync_retention.is_zero()
        {
            return bad(
                "MEDIA_CHAT__* (chat)",
                "max_group_members must be at least 2; max_text_bytes, max_title_chars, \
                 max_forward_targets, max_history_page, max_sync_page and sync_retention \
                 more than zero"
                    .into(),
            );
        }
        let rt = &self.realtime;
        if rt.max_frame_bytes.0 < 1024
            || rt.max_queued_frames == 0
            || rt.max_queued_bytes.0 < rt.max_frame_bytes.0
            || rt.max_presence_users == 0
            || !(1..=10_000).contains(&rt.max_followed_uploads)
            || rt.sync_batch == 0
            || rt.sync_batch > self.chat.max_sync_page
            || rt.heartbeat.is_zero()
            || rt.presence_expiry <= rt.heartbeat
            || rt.write_timeout.is_zero()
        {
            return bad(
                "MEDIA_REALTIME__* (realtime)",
                "max_frame_bytes must be at least 1KiB and max_queued_bytes at least that; \
                 max_queued_frames, max_presence_users, heartbeat and write_timeout more than zero; \
                 max_followed_uploads from 1 to 10,000; sync_batch from 1 to \
                 chat.max_sync_page; presence_expiry longer than heartbeat"
                    .into(),
            );
        }
        let av = &self.presets.av;
        for p in self.presets.image.iter().chain([&av.poster, &av.thumb]) {
            if !valid_preset_name(&p.name)
                || p.name == transcoder::render::STRIPPED
                || p.max_width == 0
                || p.max_height == 0
                || !(0.0..=100.0).contains(&p.quality)
            {
                return bad(
                    "presets.image",
                    format!(
                        "preset {:?}: a name of letters, digits and _ (not \"stripped\", the \
                         metadata-free original's), a box over 0, quality 0-100",
                        p.name
                    ),
                );
            }
        }
        if !valid_preset_name(&av.video.name)
            || !valid_preset_name(&av.audio.name)
            || av.video.max_long_edge < 2
            || av.video.max_short_edge < 2
            || av.video.crf > 51
            || av.video.audio_bit_rate == 0
            || av.audio.bit_rate == 0
            || !(1..=2).contains(&av.audio.channels)
        {
            return bad(
                "presets.av",
                "names of letters, digits and _, edges of at least 2, crf 0-51, bit rates over 0, 1 or 2 channels"
                    .into(),
            );
        }
        if self.presets.max_image_pixels == 0
            || self.presets.max_video_pixels == 0
            || self.presets.max_duration.is_zero()
        {
            return bad(
                "presets.max_*",
                "max_image_pixels, max_video_pixels and max_duration must be more than zero".into(),
            );
        }
        if self.database_max_connections == 0 {
            return bad(
                "MEDIA_DATABASE_MAX_CONNECTIONS (database_max_connections)",
                "must be at least 1".into(),
            );
        }
        if self.redis_namespace.is_empty() || self.redis_namespace.contains(char::is_whitespace) {
            return bad(
                "MEDIA_REDIS_NAMESPACE (redis_namespace)",
                "must be non-empty, without spaces".into(),
            );
        }
        for origin in &self.cors_origins {
            if origin != "*" && http::HeaderValue::from_str(origin).is_err() {
                return bad(
                    "MEDIA_CORS_ORIGINS (cors_origins)",
                    format!("{origin:?} is not a valid origin"),
                );
            }
        }
        let l = &self.limits;
        for (name, size) in [
            ("default_chunk_size", l.default_chunk_size),
            ("max_chunk_size", l.max_chunk_size),
        ] {
            if !size.0.is_power_of_two() || size.0 < 64 * KIB {
                return bad(
                    &format!("MEDIA_LIMITS__{} (limits.{name})", name.to_uppercase()),
                    format!("{size} must be a power of two of at least 64KiB"),
                );
            }
        }
        if l.default_chunk_size > l.max_chunk_size {
            return bad(
                "MEDIA_LIMITS__DEFAULT_CHUNK_SIZE (limits.default_chunk_size)",
                "must not exceed limits.max_chunk_size".into(),
            );
        }
        if l.inflight_memory.0 < l.max_chunk_size.0 {
            return bad(
                "MEDIA_LIMITS__INFLIGHT_MEMORY (limits.inflight_memory)",
                "must hold at least one chunk of limits.max_chunk_size".into(),
            );
        }
        if l.max_file_size.0 == 0 || l.max_single_upload.0 == 0 || l.max_json_body.0 == 0 {
            return bad("limits", "sizes must be greater than zero".into());
        }
        if l.max_page_size == 0 {
            return bad(
                "MEDIA_LIMITS__MAX_PAGE_SIZE (limits.max_page_size)",
                "must be at least 1".into(),
            );
        }
        if l.upload_expiry.is_zero() {
            return bad(
                "MEDIA_LIMITS__UPLOAD_EXPIRY (limits.upload_expiry)",
                "must be greater than zero".into(),
            );
        }
        Ok(())
    }

    /// Whether `POST /dev/sign-in` mints tokens: as set, or else only on
    /// the embedded default.
    pub fn dev_sign_in(&self) -> bool {
        self.dev_sign_in.unwrap_or_else(|| self.is_embedded())
    }

    /// True when every backend is the embedded one (no other process needed).
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none() && self.redis_url.is_none() && self.blob_store.is_none()
    }
}

/// Turns figment's error into one line per fault, each naming the setting and
/// the environment variable that sets it.
fn describe(err: figment::Error) -> ConfigError {
    let lines: Vec<String> = err
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let env = format!("MEDIA_{}", e.path.join("__").to_uppercase());
            if key.is_empty() {
                e.kind.to_string()
            } else {
                format!("{env} ({key}): {}", e.kind)
            }
        })
        .collect();
    ConfigError(lines.join("; "))
}

fn ser_secret_opt<S: serde::Serializer>(
    value: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    // Only the defaults are ever serialised (as the base layer), so the secret
    // is written back as itself; it never reaches logs, which use `Debug`.
    match value {
        Some(v) => s.serialize_some(v.expose_secret()),
        None => s.serialize_none(),
    }
}

/// A preset name: what `?variant=NAME` says, so letters, digits and `_`.
fn valid_preset_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::units::{GIB, MIB};
    use super::*;
    use figment::Jail;

    #[allow(clippy::result_large_err)]
    fn load(jail_env: &[(&str, &str)], toml: Option<&str>) -> Result<Settings, ConfigError> {
        let mut out = None;
        Jail::expect_with(|jail| {
            // The test sees only the variables it sets, not the shell's.
            jail.clear_env();
            for (k, v) in jail_env {
                jail.set_env(k, v);
            }
            let path = toml.map(|t| {
                jail.create_file("media.toml", t).expect("write toml");
                PathBuf::from("media.toml")
            });
            out = Some(Settings::load(path.as_deref()));
            Ok(())
        });
        out.expect("jail ran")
    }

    #[test]
    fn defaults_are_the_embedded_service() {
        let s = load(&[], None).expect("defaults load");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert!(s.is_embedded());
        assert_eq!(s.limits.default_chunk_size.0, 8 * MIB);
    }

    #[test]
    fn chat_limits_are_configurable_and_checked() {
        let s = load(
            &[
                ("MEDIA_CHAT__MAX_GROUP_MEMBERS", "64"),
                ("MEDIA_CHAT__EDIT_WINDOW", "5m"),
            ],
            None,
        )
        .expect("loads");
        assert_eq!(s.chat.max_group_members, 64);
        assert_eq!(s.chat.limits().edit_window, Duration::from_secs(300));
        assert_eq!(s.chat.max_text_bytes, 64 * 1024, "the default");
        for (name, value) in [
            ("MEDIA_CHAT__MAX_GROUP_MEMBERS", "1"),
            ("MEDIA_CHAT__MAX_SYNC_PAGE", "0"),
            ("MEDIA_CHAT__SYNC_RETENTION", "0s"),
        ] {
            let e = load(&[(name, value)], None).expect_err(name).to_string();
            assert!(e.contains("MEDIA_CHAT__"), "{name}: {e}");
        }
        let toml = "[[presets.image]]\nname = \"stripped\"\nversion = 1\nmax_width = 10\nmax_height = 10\nquality = 80.0\n";
        let e = load(&[], Some(toml)).expect_err("taken name").to_string();
        assert!(e.contains("metadata-free original"), "{e}");
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        let toml = "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n[limits]\nmax_file_size = \"1GiB\"\n";
        let s = load(&[("MEDIA_LISTEN", "127.0.0.1:9100")], Some(toml)).expect("loads");
        assert_eq!(s.listen.to_string(), "127.0.0.1:9100", "env beats file");
        assert_eq!(
            s.data_dir,
            PathBuf::from("/from/file"),
            "file beats default"
        );
        assert_eq!(s.limits.max_file_size.0, GIB);
        let s = load(&[("MEDIA_LIMITS__MAX_FILE_SIZE", "2GiB")], Some(toml)).expect("loads");
        assert_eq!(s.limits.max_file_size.0, 2 * GIB, "nested env beats file");
    }

    #[test]
    fn a_bad_value_names_its_setting() {
        let err = load(&[("MEDIA_LISTEN", "not-an-address")], None).expect_err("must fail");
        assert!(err.to_string().contains("MEDIA_LISTEN"), "{err}");
        let err = load(&[("MEDIA_DATABASE_URL", "mysql://x")], None).expect_err("must fail");
        assert!(err.to_string().contains("MEDIA_DATABASE_URL"), "{err}");
        let err = load(&[("MEDIA_BLOB_STORE", "gs://bucket")], None).expect_err("must fail");
        assert!(err.to_string().contains("MEDIA_BLOB_STORE"), "{err}");
        let err =
            load(&[("MEDIA_LIMITS__DEFAULT_CHUNK_SIZE", "6MiB")], None).expect_err("must fail");
        assert!(
            err.to_string().contains("MEDIA_LIMITS__DEFAULT_CHUNK_SIZE"),
            "{err}"
        );
        let s = load(&[("MEDIA_DOWNLOAD_URL_CACHE", "0")], None).expect("no cache is allowed");
        assert_eq!(s.download_url_cache, 0);
        let err = load(&[("MEDIA_DOWNLOAD_URL_CACHE", "20000000")], None).expect_err("too many");
        assert!(
            err.to_string().contains("MEDIA_DOWNLOAD_URL_CACHE"),
            "{err}"
        );
        for followed in ["0", "10001"] {
            let env = [("MEDIA_REALTIME__MAX_FOLLOWED_UPLOADS", followed)];
            let err = load(&env, None).expect_err("out of range");
            assert!(err.to_string().contains("max_followed_uploads"), "{err}");
        }
        let err = load(&[("MEDIA_NO_SUCH_SETTING", "1")], None).expect_err("must fail");
        assert!(err.to_string().contains("no_such_setting"), "{err}");
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let s = load(
            &[
                (
                    "MEDIA_JWT_SECRET",
                    "super-secret-value-that-is-long-enough-xx",
                ),
                ("MEDIA_DATABASE_URL", "postgres://u:hunter2@localhost/db"),
            ],
            None,
        )
        .expect("loads");
        let debug = format!("{s:?}");
        assert!(!debug.contains("super-secret"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn byte_sizes_parse_with_units() {
        assert_eq!("8MiB".parse::<ByteSize>().map(|b| b.0), Ok(8 * MIB));
        assert_eq!("16 MB".parse::<ByteSize>().map(|b| b.0), Ok(16_000_000));
        assert_eq!("1048576".parse::<ByteSize>().map(|b| b.0), Ok(MIB));
        assert!("8 parsecs".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(8 * MIB).to_string(), "8MiB");
    }

    #[test]
    fn s3_locations_parse() {
        let loc = S3Location::parse("s3://media/prod/").expect("parses");
        assert_eq!(loc.bucket, "media");
        assert_eq!(loc.prefix, "prod/");
        assert_eq!(
            S3Location::parse("s3://media").map(|l| l.prefix),
            Ok(String::new())
        );
        assert!(S3Location::parse("s3://X").is_err());
        assert!(S3Location::parse("media").is_err());
    }
}
