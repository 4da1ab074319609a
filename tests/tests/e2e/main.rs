//! The end-to-end suite, one test binary (one link of the whole stack).
//!
//! A test that must behave the same on both backend sets is written once as
//! `async fn NAME(set: BackendSet)` and declared with `both_sets!(NAME)`,
//! which makes it two tests, `NAME::embedded` (SQLite, in-process progress,
//! filesystem blobs: no other process) and `NAME::postgres_redis_garage`
//! (the real backends `infra/up.sh` starts), so a failure names its set.

mod access_matrix;
mod admin;
mod chat;
mod connections;
mod dedup;
mod downloads;
mod faults;
mod foundation;
mod fuzz;
mod hostile;
mod kills;
mod mediactl;
mod metadata_contract;
mod metrics;
mod openapi;
mod operators;
mod processing;
mod promises;
mod realtime;
mod seams;
mod sniffing;
mod tus;
mod tus_clients;
mod uploads;
mod web;
