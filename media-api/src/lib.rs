//! The media upload service: chunked, resumable, content-addressed uploads
//! over S3 multipart, with live progress, dedup by BLAKE3, presigned
//! downloads and a processing worker pool.
//!
//! The binary (`src/main.rs`) only parses the command line; everything else is
//! here so tests can build the service in-process.
//!
//! The house, from the bottom up (a module imports only from below it):
//! - values and plumbing: `ids`, `config`, `secrets`, `auth`, `telemetry`,
//!   `shutdown`, `background` (periodic work that survives a panic);
//! - the seams, each a trait with two implementations: `metadata_store`,
//!   `progress_bus`, `blob_store`; `backends` connects them;
//! - `quotas`, each user's stored bytes, open sessions and rates, over the
//!   metadata store and the progress bus;
//! - the domains, each owning its types, errors and rules: `uploads`,
//!   `media`, `downloads`, `processing`, and `chat` (the messaging core over
//!   `chat-core`'s rules);
//! - `realtime`, the WebSocket gateway over `chat` and `uploads`;
//! - the HTTP layer (`http`), the composition root (`app`) and the command
//!   line (`cli`).

pub mod app;
pub mod auth;
pub mod backends;
pub mod background;
pub mod blob_store;
pub mod chat;
pub mod cli;
pub mod config;
pub mod downloads;
pub mod http;
pub mod ids;
pub mod media;
pub mod metadata_store;
pub mod operators;
pub mod processing;
pub mod progress_bus;
pub mod quotas;
pub mod realtime;
pub mod secrets;
pub mod shutdown;
pub mod telemetry;
pub mod uploads;

pub use app::Application;
pub use config::Settings;
