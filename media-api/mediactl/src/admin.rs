//! `mediactl admin …`: the operators' tools over `/v1/admin`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::client::{Api, Failure};
use crate::output::{self, Bars};

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Remakes variants of the contents a selector matches, as a batch.
    Reprocess(ReprocessArgs),
    /// Lists batches, newest first.
    Batches {
        /// The service's JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Watches, pauses, resumes or cancels a batch.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Erases a user: their media, sessions and sent attachments, and every
    /// content no one else holds, at once (asks first unless --yes).
    Erase {
        /// The user id.
        user: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Checks that the store and the database agree, and shows the findings.
    Fsck {
        /// Fix what can be fixed: orphans and orphan multipart uploads older
        /// than the GC grace deleted, missing variants made again, missing
        /// originals marked, stuck completions ended.
        #[arg(long)]
        repair: bool,
    },
    /// Blocks a content everywhere (downloads and uploads of it answer 451).
    Block {
        /// Its BLAKE3.
        blake3: String,
        /// Why (kept with the block and in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Lifts a block.
    Unblock {
        /// Its BLAKE3.
        blake3: String,
    },
    /// One content: size, type, who holds it, variants, block.
    Content {
        /// Its BLAKE3.
        blake3: String,
        /// The service's JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// The service's statistics.
    Stats {
        /// The service's JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Processing jobs in a state, with their last error.
    Jobs {
        /// `queued`, `running`, `done`, `dead` or `paused`.
        #[arg(long, default_value = "dead")]
        state: String,
        /// Jobs per page.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The service's JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Queues a dead job again.
    Retry {
        /// The job id.
        job_id: String,
    },
    /// The audit log, newest first.
    Audit {
        /// Entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BatchCommand {
    /// A live progress bar until the batch ends (Ctrl-C leaves it running).
    Watch {
        /// The batch id.
        id: String,
    },
    /// Stops running its queued jobs until resumed.
    Pause {
        /// The batch id.
        id: String,
    },
    /// Runs it again.
    Resume {
        /// The batch id.
        id: String,
    },
    /// Drops its queued jobs; finished ones stay.
    Cancel {
        /// The batch id.
        id: String,
    },
}

/// The selector as flags.
#[derive(Debug, Args)]
pub(crate) struct ReprocessArgs {
    /// Sniffed types, exact or `image/*` (repeatable).
    #[arg(long = "content-type")]
    content_types: Vec<String>,
    /// Only these presets are remade (repeatable).
    #[arg(long = "preset")]
    presets: Vec<String>,
    /// Only contents with a variant made by another version of a preset.
    #[arg(long)]
    stale_only: bool,
    /// First stored at or after (RFC 3339).
    #[arg(long)]
    created_after: Option<String>,
    /// First stored before (RFC 3339).
    #[arg(long)]
    created_before: Option<String>,
    /// Held by this user.
    #[arg(long)]
    owner: Option<String>,
    /// These contents (repeatable).
    #[arg(long = "blake3")]
    blake3: Vec<String>,
    /// In this processing state (`failed`, …).
    #[arg(long)]
    status: Option<String>,
    /// Jobs per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Count what matches and show the first few; enqueue nothing.
    #[arg(long)]
    dry_run: bool,
    /// Watch the batch once it is started.
    #[arg(long)]
    watch: bool,
}

impl ReprocessArgs {
    fn selector(&self) -> Value {
        let mut s = Map::new();
        let mut put = |k: &str, v: Value| {
            s.insert(k.into(), v);
        };
        if !self.content_types.is_empty() {
            put("content_types", json!(self.content_types));
        }
        if !self.presets.is_empty() {
            put("presets", json!(self.presets));
        }
        if self.stale_only {
            put("stale_only", json!(true));
        }
        for (k, v) in [
            ("created_after", &self.created_after),
            ("created_before", &self.created_before),
            ("owner", &self.owner),
            ("status", &self.status),
        ] {
            if let Some(v) = v {
                put(k, json!(v));
            }
        }
        if !self.blake3.is_empty() {
            put("blake3", json!(self.blake3));
        }
        Value::Object(s)
    }
}

/// Runs an admin command.
pub(crate) async fn run(api: &Api, command: AdminCommand) -> Result<(), Failure> {
    match command {
        AdminCommand::Reprocess(args) => reprocess(api, args).await,
        AdminCommand::Batches { json } => batches(api, json).await,
        AdminCommand::Batch(BatchCommand::Watch { id }) => watch(api, &id).await,
        AdminCommand::Batch(BatchCommand::Pause { id }) => act(api, &id, "pause").await,
        AdminCommand::Batch(BatchCommand::Resume { id }) => act(api, &id, "resume").await,
        AdminCommand::Batch(BatchCommand::Cancel { id }) => act(api, &id, "cancel").await,
        AdminCommand::Erase { user, yes } => erase(api, &user, yes).await,
        AdminCommand::Fsck { repair } => fsck(api, repair).await,
        AdminCommand::Block { blake3, reason } => {
            let done = api
                .json(
                    api.post(&format!("/v1/admin/content/{blake3}/block"))
                        .json(&json!({ "reason": reason })),
                )
                .await?;
            println!(
                "blocked {blake3} ({}; {} objects moved out of reach)",
                if done["newly_blocked"] == true {
                    "new"
                } else {
                    "already blocked"
                },
                done["objects"]
            );
            Ok(())
        }
        AdminCommand::Unblock { blake3 } => {
            let done = api
                .json(api.delete(&format!("/v1/admin/content/{blake3}/block")))
                .await?;
            if done["was_blocked"] == true {
                println!("unblocked {blake3}");
            } else {
                println!("{blake3} was not blocked");
            }
            Ok(())
        }
        AdminCommand::Content { blake3, json } => content(api, &blake3, json).await,
        AdminCommand::Stats { json } => stats(api, json).await,
        AdminCommand::Jobs { state, limit, json } => jobs(api, &state, limit, json).await,
        AdminCommand::Retry { job_id } => {
            api.json(api.post(&format!("/v1/admin/jobs/{job_id}/retry")))
                .await?;
            println!("queued {job_id} again");
            Ok(())
        }
        AdminCommand::Audit { limit } => audit(api, limit).await,
    }
}

async fn reprocess(api: &Api, args: ReprocessArgs) -> Result<(), Failure> {
    let mut body = json!({ "selector": args.selector(), "dry_run": args.dry_run });
    if let Some(rate) = args.rate {
        body["rate"] = json!(rate);
    }
    let answer = api
        .json(api.post("/v1/admin/reprocess").json(&body))
        .await?;
    if args.dry_run {
        println!(
            "{} contents match ({})",
            answer["matched"],
            output::bytes(answer["bytes"].as_u64().unwrap_or(0))
        );
        let rows = output::rows(&answer["sample"], |c| {
            vec![
                output::text(&c["blake3"]),
                output::text(&c["content_type"]),
                output::bytes(c["size"].as_u64().unwrap_or(0)),
                output::text(&c["processing"]),
            ]
        });
        if !rows.is_empty() {
            output::table(&["BLAKE3", "TYPE", "SIZE", "PROCESSING"], &rows);
        }
        return Ok(());
    }
    let id = output::text(&answer["batch_id"]);
    println!("batch {id}: {} contents to reprocess", answer["matched"]);
    if args.watch {
        watch(api, &id).await?;
    }
    Ok(())
}

async fn batches(api: &Api, json: bool) -> Result<(), Failure> {
    let list = api.json(api.get("/v1/admin/batches")).await?;
    if json {
        println!("{list:#}");
        return Ok(());
    }
    let rows = output::rows(&list["items"], |b| {
        vec![
            output::text(&b["batch_id"]),
            output::text(&b["kind"]),
            output::text(&b["state"]),
            format!("{}/{}", b["done"], b["enqueued"]),
            output::text(&b["failed"]),
            output::text(&b["started_at"]),
            output::text(&b["created_by"]),
        ]
    });
    output::table(
        &["BATCH", "KIND", "STATE", "DONE", "FAILED", "STARTED", "BY"],
        &rows,
    );
    Ok(())
}

async fn batch(api: &Api, id: &str) -> Result<Value, Failure> {
    api.json(api.get(&format!("/v1/admin/batches/{id}"))).await
}

/// A live bar until the batch ends; Ctrl-C stops watching, not the batch.
async fn watch(api: &Api, id: &str) -> Result<(), Failure> {
    let first = batch(api, id).await?;
    let bars = Bars::new();
    let fsck = first["kind"] == "fsck";
    let bar = bars.items(
        &format!(
            "{} {}",
            output::text(&first["kind"]),
            &id[..id.len().min(8)]
        ),
        if fsck {
            0
        } else {
            first["enqueued"].as_u64().unwrap_or(0)
        },
    );
    let mut last_line = String::new();
    let follow = async {
        loop {
            let b = batch(api, id).await?;
            let finished = b["done"].as_u64().unwrap_or(0) + b["failed"].as_u64().unwrap_or(0);
            let state = output::text(&b["state"]);
            let message = if fsck {
                let scanned = &b["report"]["scanned"];
                format!(
                    "{state}: {} objects, {} rows",
                    scanned["objects"], scanned["rows"]
                )
            } else {
                bar.set_position(finished);
                format!("{state}, {} failed", b["failed"])
            };
            bar.set_message(message.clone());
            if !bars.drawn() && message != last_line {
                println!("{id}: {message}");
                last_line = message;
            }
            if state == "done" || state == "cancelled" {
                return Ok::<Value, Failure>(b);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let end = tokio::select! {
        end = follow => end?,
        _ = tokio::signal::ctrl_c() => {
            bar.abandon();
            return Err(Failure::Interrupted(format!(
                "stopped watching; batch {id} goes on (mediactl admin batch watch {id})"
            )));
        }
    };
    bar.finish_and_clear();
    if fsck {
        print_fsck(&end["report"]);
    } else {
        println!(
            "batch {id}: {}: {} done, {} failed, {} cancelled of {}",
            output::text(&end["state"]),
            end["done"],
            end["failed"],
            end["cancelled"],
            end["enqueued"]
        );
    }
    Ok(())
}

async fn act(api: &Api, id: &str, action: &str) -> Result<(), Failure> {
    let b = api
        .json(api.post(&format!("/v1/admin/batches/{id}/{action}")))
        .await?;
    println!(
        "batch {id}: {} ({} done of {})",
        output::text(&b["state"]),
        b["done"],
        b["enqueued"]
    );
    Ok(())
}

async fn erase(api: &Api, user: &str, yes: bool) -> Result<(), Failure> {
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::Usage(
                "erasing asks for confirmation: pass --yes when not at a terminal".into(),
            ));
        }
        print!(
            "Erase {user}: their media, upload sessions and the attachments they sent, \
             and every content no one else holds, now and for good.\nType the user id to confirm: "
        );
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != user {
            return Err(Failure::Usage("not confirmed: nothing was erased".into()));
        }
    }
    let report = api
        .json(api.post(&format!("/v1/admin/users/{}/erase", percent_encode(user))))
        .await?;
    let n = |k: &str| output::text(&report[k]);
    output::pairs(&[
        ("media deleted", n("media_deleted")),
        ("messages deleted", n("messages_deleted")),
        ("attachments deleted", n("attachments_deleted")),
        ("sessions deleted", n("sessions_deleted")),
        ("sessions aborted", n("sessions_aborted")),
        ("contents deleted", n("contents_deleted")),
        ("contents others hold", n("contents_kept")),
        ("contents held (blocked)", n("contents_held")),
        (
            "bytes freed",
            output::bytes(report["bytes_freed"].as_u64().unwrap_or(0)),
        ),
    ]);
    Ok(())
}

/// A path segment, percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn fsck(api: &Api, repair: bool) -> Result<(), Failure> {
    let started = api
        .json(
            api.post("/v1/admin/fsck")
                .json(&json!({ "repair": repair })),
        )
        .await?;
    let id = output::text(&started["batch_id"]);
    println!(
        "fsck {id} started{}",
        if repair { " (repairing)" } else { "" }
    );
    watch(api, &id).await
}

fn print_fsck(report: &Value) {
    let rows: Vec<Vec<String>> = [
        ("orphan objects", "orphan_objects"),
        ("missing originals", "missing_originals"),
        ("missing variants", "missing_variants"),
        ("orphan multipart uploads", "orphan_multipart"),
        ("stuck completions", "stuck_completing"),
    ]
    .iter()
    .map(|(label, key)| {
        let f = &report[*key];
        vec![
            (*label).to_owned(),
            output::text(&f["count"]),
            output::text(&f["repaired"]),
            f["sample"]
                .as_array()
                .and_then(|s| s.first())
                .map_or_else(|| "-".into(), output::text),
        ]
    })
    .collect();
    output::table(&["FINDING", "COUNT", "REPAIRED", "FIRST"], &rows);
    let scanned = &report["scanned"];
    println!(
        "scanned {} objects, {} rows, {} multipart uploads: {}",
        scanned["objects"],
        scanned["rows"],
        scanned["multipart"],
        if report["clean"] == true {
            "clean"
        } else {
            "inconsistent"
        }
    );
}

async fn content(api: &Api, blake3: &str, json: bool) -> Result<(), Failure> {
    let c = api
        .json(api.get(&format!("/v1/admin/content/{blake3}")))
        .await?;
    if json {
        println!("{c:#}");
        return Ok(());
    }
    let holders = |list: &Value, key: &str| -> String {
        let parts: Vec<String> = list
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| format!("{} ×{}", output::text(&h[key]), h["count"]))
            .collect();
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(", ")
        }
    };
    output::pairs(&[
        ("blake3", output::text(&c["blake3"])),
        ("size", output::bytes(c["size"].as_u64().unwrap_or(0))),
        ("type", output::text(&c["content_type"])),
        ("processing", output::text(&c["processing"])),
        ("stored", output::text(&c["created_at"])),
        ("media", holders(&c["media"], "owner")),
        ("attachments", holders(&c["attachments"], "conversation_id")),
        (
            "blocked",
            match &c["blocked"] {
                Value::Null => "no".into(),
                b => format!(
                    "{} (by {}, {})",
                    output::text(&b["reason"]),
                    output::text(&b["blocked_by"]),
                    output::text(&b["blocked_at"])
                ),
            },
        ),
    ]);
    let rows = output::rows(&c["variants"], |v| {
        vec![
            output::text(&v["name"]),
            output::text(&v["version"]),
            output::text(&v["content_type"]),
            output::bytes(v["size"].as_u64().unwrap_or(0)),
        ]
    });
    if !rows.is_empty() {
        output::table(&["VARIANT", "VERSION", "TYPE", "SIZE"], &rows);
    }
    Ok(())
}

async fn stats(api: &Api, json: bool) -> Result<(), Failure> {
    let s = api.json(api.get("/v1/admin/stats")).await?;
    if json {
        println!("{s:#}");
        return Ok(());
    }
    let b = |k: &str| output::bytes(s[k].as_u64().unwrap_or(0));
    output::pairs(&[
        ("users", output::text(&s["users"])),
        ("media", output::text(&s["media"])),
        ("attachments", output::text(&s["attachments"])),
        ("contents", output::text(&s["contents"])),
        ("logical bytes", b("logical_bytes")),
        ("stored bytes", b("stored_bytes")),
        ("variant bytes", b("variant_bytes")),
        (
            "dedup ratio",
            format!("{:.2}", s["dedup_ratio"].as_f64().unwrap_or(1.0)),
        ),
        ("dead jobs", output::text(&s["dead_jobs"])),
    ]);
    println!();
    let types = output::rows(&s["by_content_type"], |t| {
        vec![
            output::text(&t["content_type"]),
            output::text(&t["contents"]),
            output::bytes(t["bytes"].as_u64().unwrap_or(0)),
        ]
    });
    output::table(&["TYPE", "CONTENTS", "BYTES"], &types);
    println!();
    let mut jobs = output::rows(&s["jobs"], |j| {
        vec![
            output::text(&j["kind"]),
            output::text(&j["state"]),
            output::text(&j["count"]),
        ]
    });
    if let Some(uploads) = s["uploads"].as_object() {
        for (state, n) in uploads {
            jobs.push(vec![
                "upload session".into(),
                state.clone(),
                output::text(n),
            ]);
        }
    }
    output::table(&["WHAT", "STATE", "COUNT"], &jobs);
    Ok(())
}

async fn jobs(api: &Api, state: &str, limit: u32, json: bool) -> Result<(), Failure> {
    let list = api
        .json(api.get(&format!("/v1/admin/jobs?state={state}&limit={limit}")))
        .await?;
    if json {
        println!("{list:#}");
        return Ok(());
    }
    let rows = output::rows(&list["items"], |j| {
        vec![
            output::text(&j["job_id"]),
            output::text(&j["blake3"]).chars().take(16).collect(),
            output::text(&j["attempts"]),
            output::text(&j["last_error"]),
        ]
    });
    output::table(&["JOB", "CONTENT", "ATTEMPTS", "LAST ERROR"], &rows);
    Ok(())
}

async fn audit(api: &Api, limit: u32) -> Result<(), Failure> {
    let log = api
        .json(api.get(&format!("/v1/admin/audit?limit={limit}")))
        .await?;
    let rows = output::rows(&log["items"], |e| {
        vec![
            output::text(&e["at"]),
            output::text(&e["admin"]),
            output::text(&e["status"]),
            output::text(&e["action"]),
        ]
    });
    output::table(&["AT", "ADMIN", "STATUS", "ACTION"], &rows);
    Ok(())
}
