//! The consistency check: do the store and the database agree?
//!
//! It walks the store's keys and the keys the rows name side by side, both
//! in byte order and a page at a time (a merge join: never the whole store
//! in memory, one listing request and one query per page), and finds
//! objects no row names (orphans), rows whose object is missing (a content's
//! original, a variant), multipart uploads no open session owns, and
//! sessions stuck in `completing`. With `repair`, orphans older than the GC
//! grace are deleted, orphan multipart uploads older than it aborted,
//! missing variants made again, contents whose original is missing marked
//! failed, and stuck completions ended by the janitor's own pass. Each
//! finding is checked once more (a HEAD) before it is reported, so an
//! object written or deleted mid-walk is not taken for an inconsistency.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::OperatorError;
use crate::backends::Backends;
use crate::blob_store::{BlobKey, ListedObject};
use crate::ids::{Blake3, millis as ms, now_ms};
use crate::metadata_store::fsck::{Expected, ExpectedObject};
use crate::metadata_store::jobs::BATCH_PRIORITY;

/// Keys per page, on each side.
const PAGE: usize = 1000;
/// Examples kept per finding.
const SAMPLE: usize = 20;

/// Ends completions cut off midway (the upload service's janitor pass).
#[async_trait]
pub trait Janitor: Send + Sync {
    /// Ends every abandoned completion; answers how many.
    async fn end_abandoned(&self) -> Result<usize, String>;
}

/// One kind of finding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How many.
    pub count: u64,
    /// Their bytes, where known.
    pub bytes: u64,
    /// The first few.
    pub sample: Vec<String>,
    /// How many `repair` fixed.
    pub repaired: u64,
}

impl Finding {
    fn add(&mut self, what: impl FnOnce() -> String, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
        if self.sample.len() < SAMPLE {
            self.sample.push(what());
        }
    }
}

/// How far the walk went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scanned {
    /// Objects listed.
    pub objects: u64,
    /// Keys the rows name.
    pub rows: u64,
    /// Multipart uploads listed.
    pub multipart: u64,
}

/// An fsck's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FsckReport {
    /// Whether it repairs.
    pub repair: bool,
    /// Progress.
    pub scanned: Scanned,
    /// Objects no row names.
    pub orphan_objects: Finding,
    /// Contents whose original is missing.
    pub missing_originals: Finding,
    /// Variants recorded but missing.
    pub missing_variants: Finding,
    /// Multipart uploads no open session owns.
    pub orphan_multipart: Finding,
    /// Sessions stuck in `completing`.
    pub stuck_completing: Finding,
    /// Originals an earlier check found missing and marked: known, not new.
    pub originals_marked_missing: u64,
    /// Nothing new found.
    pub clean: bool,
}

/// What a check needs to know.
#[derive(Clone)]
pub struct Fsck {
    /// The seams.
    pub backends: Backends,
    /// Ends stuck completions.
    pub janitor: Arc<dyn Janitor>,
    /// Orphans younger than this are reported, never deleted (an upload may
    /// be writing its object before its row).
    pub grace: Duration,
    /// A completion older than this is stuck.
    pub abandoned: Duration,
}

impl std::fmt::Debug for Fsck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fsck")
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Fsck {
    /// Runs the check as batch `batch_id`, saving its report as it goes;
    /// stops early when the batch is cancelled.
    pub async fn run(&self, batch_id: &str, repair: bool) {
        let mut report = FsckReport {
            repair,
            ..FsckReport::default()
        };
        let outcome = self.check(batch_id, &mut report).await;
        if let Err(e) = &outcome {
            tracing::error!(error = %e, batch = batch_id, "fsck failed");
        }
        report.clean = outcome.is_ok()
            && [
                &report.orphan_objects,
                &report.missing_originals,
                &report.missing_variants,
                &report.orphan_multipart,
                &report.stuck_completing,
            ]
            .iter()
            .all(|f| f.count == 0);
        self.save(batch_id, &report, true).await;
        tracing::info!(batch = batch_id, clean = report.clean, "fsck finished");
    }

    async fn save(&self, batch_id: &str, report: &FsckReport, finished: bool) {
        let text = serde_json::to_string(report).unwrap_or_default();
        if let Err(e) = self
            .backends
            .batches
            .report_batch(batch_id, &text, finished)
            .await
        {
            tracing::warn!(error = %e, "could not save the fsck's progress");
        }
    }

    async fn cancelled(&self, batch_id: &str) -> bool {
        matches!(
            self.backends.batches.batch(batch_id).await,
            Ok(Some(b)) if b.state == "cancelled"
        )
    }

    async fn check(&self, batch_id: &str, report: &mut FsckReport) -> Result<(), OperatorError> {
        let cutoff = now_ms() - ms(self.grace);
        if !self.walk(batch_id, report, cutoff).await? {
            return Ok(());
        }
        self.multipart(report, cutoff).await?;
        let (count, sample) = self
            .backends
            .fsck
            .stuck_completing(now_ms() - ms(self.abandoned), SAMPLE as u32)
            .await?;
        report.stuck_completing.count = count;
        report.stuck_completing.sample = sample;
        if report.repair && count > 0 {
            match self.janitor.end_abandoned().await {
                Ok(n) => report.stuck_completing.repaired = n as u64,
                Err(e) => tracing::warn!(error = %e, "fsck could not end stuck completions"),
            }
        }
        Ok(())
    }

    /// The merge walk; false when cancelled.
    async fn walk(
        &self,
        batch_id: &str,
        report: &mut FsckReport,
        cutoff: i64,
    ) -> Result<bool, OperatorError> {
        let blobs = &self.backends.blobs;
        let mut objects: VecDeque<ListedObject> = VecDeque::new();
        let mut rows: VecDeque<ExpectedObject> = VecDeque::new();
        let (mut store_after, mut rows_after) = (None::<String>, String::new());
        let (mut store_done, mut rows_done) = (false, false);
        let mut remade: HashSet<Blake3> = HashSet::new();
        loop {
            if objects.is_empty() && !store_done {
                let page = blobs.list_page("", store_after.as_deref(), PAGE).await?;
                store_done = page.len() < PAGE;
                store_after = page.last().map(|o| o.key.clone());
                report.scanned.objects += page.len() as u64;
                objects.extend(page);
                self.save(batch_id, report, false).await;
                if self.cancelled(batch_id).await {
                    return Ok(false);
                }
            }
            if rows.is_empty() && !rows_done {
                let page = self
                    .backends
                    .fsck
                    .expected_objects(&rows_after, PAGE as u32)
                    .await?;
                rows_done = page.len() < PAGE;
                if let Some(last) = page.last() {
                    rows_after.clone_from(&last.key);
                }
                report.scanned.rows += page.len() as u64;
                rows.extend(page);
            }
            match (objects.front(), rows.front()) {
                (None, None) => return Ok(true),
                (Some(o), Some(r)) if o.key == r.key => {
                    objects.pop_front();
                    rows.pop_front();
                }
                (Some(o), r) if r.is_none_or(|r| o.key < r.key) => {
                    let object = objects.pop_front().expect("a front");
                    self.orphan(report, object, cutoff).await?;
                }
                _ => {
                    let row = rows.pop_front().expect("a front");
                    self.missing(report, row, &mut remade).await?;
                }
            }
        }
    }

    async fn orphan(
        &self,
        report: &mut FsckReport,
        object: ListedObject,
        cutoff: i64,
    ) -> Result<(), OperatorError> {
        report
            .orphan_objects
            .add(|| object.key.clone(), object.size);
        if report.repair
            && object.modified_ms < cutoff
            && let Ok(key) = BlobKey::parse(&object.key)
        {
            self.backends.blobs.delete(&key).await?;
            report.orphan_objects.repaired += 1;
        }
        Ok(())
    }

    async fn missing(
        &self,
        report: &mut FsckReport,
        row: ExpectedObject,
        remade: &mut HashSet<Blake3>,
    ) -> Result<(), OperatorError> {
        if row.what == Expected::Session {
            return Ok(());
        }
        // Looked at again: an object deleted with its row mid-walk is no finding.
        let Ok(key) = BlobKey::parse(&row.key) else {
            return Ok(());
        };
        if self.backends.blobs.head(&key).await?.is_some() {
            return Ok(());
        }
        match row.what {
            Expected::Original(_, true) => report.originals_marked_missing += 1,
            Expected::Original(blake3, false) => {
                report.missing_originals.add(|| blake3.to_hex(), 0);
                if report.repair {
                    self.backends.fsck.mark_original_missing(&blake3).await?;
                    report.missing_originals.repaired += 1;
                }
            }
            Expected::Variant(blake3, preset) => {
                report
                    .missing_variants
                    .add(|| format!("{}/{preset}", blake3.to_hex()), 0);
                if report.repair {
                    if remade.insert(blake3) {
                        self.backends
                            .jobs
                            .reprocess(&blake3, BATCH_PRIORITY)
                            .await?;
                    }
                    report.missing_variants.repaired += 1;
                }
            }
            Expected::Session => {}
        }
        Ok(())
    }

    async fn multipart(&self, report: &mut FsckReport, cutoff: i64) -> Result<(), OperatorError> {
        let (scanned, orphans) = self.backends.orphan_multiparts::<OperatorError>().await?;
        report.scanned.multipart = scanned as u64;
        for upload in &orphans {
            report.orphan_multipart.add(|| upload.key.clone(), 0);
            if report.repair && self.backends.abort_orphan_if_before(upload, cutoff).await? {
                report.orphan_multipart.repaired += 1;
            }
        }
        Ok(())
    }
}
