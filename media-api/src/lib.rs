//! The media upload service: chunked, resumable, content-addressed uploads
//! over S3 multipart, with live progress, dedup by BLAKE3, presigned
//! downloads and a processing worker pool.
//!
//! The binary (`src/main.rs`) only parses the command line; everything else is
//! here so tests can build the service in-process.

pub mod app;
pub mod auth;
pub mod blob_store;
pub mod chunk_hash;
pub mod cli;
pub mod config;
pub mod downloads;
pub mod ids;
pub mod job_queue;
pub mod media_catalog;
pub mod metadata_store;
pub mod problem;
pub mod progress_bus;
pub mod routes;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod upload_session;
pub mod worker_pool;

pub use app::Application;
pub use config::Settings;
