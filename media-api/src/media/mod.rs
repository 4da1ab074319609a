//! The media catalog: a user's media items and the attachments made of them,
//! the access rule that decides who may read one (from `chat-core`), listing, deletion (dropping a reference)
//! and the views the API shows. The garbage collector that deletes what
//! nobody references is in `gc`.

pub mod gc;
mod view;

use serde::Serialize;

pub use view::{MediaView, VariantView};

use crate::backends::Backends;
use crate::ids::{MediaId, UserId, decode_page_cursor, encode_page_cursor, page_size};
use crate::metadata_store::jobs::VariantRecord;
use crate::metadata_store::{MediaRecord, MediaStatus, MetadataError};
use chat_core::access::Original;

/// Media items over the backends.
#[derive(Debug, Clone)]
pub struct MediaCatalog {
    backends: Backends,
    /// Most items in one page of a listing.
    max_page_size: u32,
}

impl MediaCatalog {
    /// A catalog over these backends.
    pub fn new(backends: Backends, max_page_size: u32) -> Self {
        Self {
            backends,
            max_page_size,
        }
    }
}

/// The object served as a media item's original to one caller.
#[derive(Debug, Clone)]
pub enum OriginalObject {
    /// The bytes as uploaded.
    Exact,
    /// The image without its metadata.
    Stripped(VariantRecord),
    /// Not made yet: processing is still running.
    NotYet,
    /// None can be made (the image could not be processed): the original
    /// stays with its uploader.
    Withheld,
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MediaPage {
    /// Newest first.
    pub items: Vec<MediaView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Why a listing request is refused.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// `limit` out of range.
    #[error("limit must be from 1 to {0}")]
    InvalidLimit(u32),
    /// A cursor we did not make.
    #[error("the cursor is not one this service returned")]
    InvalidCursor,
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] MetadataError),
}

/// Cursors are opaque to clients: `(created_at, media_id)` of the last item.
fn encode_cursor(m: &MediaRecord) -> String {
    encode_page_cursor(m.created_at, m.media_id)
}

fn decode_cursor(cursor: &str) -> Option<(i64, MediaId)> {
    decode_page_cursor(cursor, MediaId::parse)
}

impl MediaCatalog {
    /// Lists the caller's media, newest first.
    pub async fn list(
        &self,
        owner: &UserId,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<MediaPage, ListError> {
        let max_page = self.max_page_size;
        let backends = &self.backends;
        let limit = page_size(limit, 50, max_page).ok_or(ListError::InvalidLimit(max_page))?;
        let after = cursor
            .map(|c| decode_cursor(c).ok_or(ListError::InvalidCursor))
            .transpose()?;
        // One extra row says whether another page follows.
        let mut rows = backends.media.list_media(owner, after, limit + 1).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Ok(MediaPage {
            next_cursor: if more {
                rows.last().map(encode_cursor)
            } else {
                None
            },
            items: rows.iter().map(MediaView::from).collect(),
        })
    }

    /// Deletes the caller's media item; false when it is not theirs or not there.
    pub async fn delete(&self, owner: &UserId, id: MediaId) -> Result<bool, MetadataError> {
        self.backends.media.delete_media(owner, id).await
    }

    /// A media item the caller may read; `None` when it does not exist or
    /// the caller may not know it does (the same answer). A media item is
    /// its owner's; an attachment is for the members of its conversation
    /// who joined before it was sent (`chat-core`'s rule); either way the
    /// record names the content, and its `owner` is whose upload it was.
    pub async fn readable(
        &self,
        caller: &UserId,
        id: MediaId,
    ) -> Result<Option<MediaRecord>, MetadataError> {
        if let Some(media) = self.backends.media.media(id).await? {
            return Ok(chat_core::may_read(media.owner.as_str(), caller.as_str()).then_some(media));
        }
        let Some(attachment) = self.backends.chat.attachment(id).await? else {
            return Ok(None);
        };
        let member = self
            .backends
            .chat
            .member(attachment.conversation_id, caller)
            .await?;
        let view = chat_core::access::AttachmentView {
            message_seq: attachment.message_seq,
            // Deleting a message for everyone deletes its attachments.
            message_deleted: false,
            caller_joined_seq: member.filter(|m| m.active).map(|m| m.joined_seq),
        };
        Ok(chat_core::access::may_read_attachment(view).then_some(attachment.media))
    }

    /// A media item as the caller sees it, with its variants; `None` when
    /// it is not one they may read.
    pub async fn view(
        &self,
        caller: &UserId,
        id: MediaId,
    ) -> Result<Option<MediaView>, MetadataError> {
        let Some(media) = self.readable(caller, id).await? else {
            return Ok(None);
        };
        let variants = self.variants(&media).await?;
        Ok(Some(MediaView::from(&media).with_variants(&variants)))
    }

    /// Which object is the original for `caller`: the uploader's exact
    /// bytes, or for anyone else an image's metadata-free rendition (made by
    /// the worker pool once per content).
    pub async fn original(
        &self,
        caller: &UserId,
        media: &MediaRecord,
    ) -> Result<OriginalObject, MetadataError> {
        let is_image =
            transcoder::sniff::kind_of(&media.content_type) == transcoder::sniff::MediaKind::Image;
        match chat_core::access::original_for(media.owner.as_str(), caller.as_str(), is_image) {
            Original::Exact => Ok(OriginalObject::Exact),
            Original::Stripped => {
                let stripped = self
                    .variants(media)
                    .await?
                    .into_iter()
                    .filter(|v| v.preset == transcoder::render::STRIPPED)
                    .max_by_key(|v| v.version);
                Ok(match (stripped, media.status) {
                    (Some(v), _) => OriginalObject::Stripped(v),
                    (None, MediaStatus::Processing) => OriginalObject::NotYet,
                    (None, _) => OriginalObject::Withheld,
                })
            }
        }
    }

    /// A media item's variants: its content's, once it shows them (a media
    /// item still shown `processing` has none, as new content would not).
    pub async fn variants(&self, media: &MediaRecord) -> Result<Vec<VariantRecord>, MetadataError> {
        if media.shown_after.is_some() {
            return Ok(Vec::new());
        }
        self.backends.jobs.variants(&media.blake3).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let id = MediaId::generate();
        let m = MediaRecord {
            media_id: id,
            owner: UserId::parse("a").expect("user"),
            blake3: crate::ids::Blake3([0; 32]),
            size: 1,
            content_type: "text/plain".into(),
            file_name: crate::ids::FileName::parse("f").expect("name"),
            status: crate::metadata_store::MediaStatus::Ready,
            blocked: false,
            storage_key: crate::ids::BlobKey::parse("o/x").expect("key"),
            failure: None,
            probe: None,
            created_at: 1_700_000_000_123,
            shown_after: None,
        };
        assert_eq!(
            decode_cursor(&encode_cursor(&m)),
            Some((1_700_000_000_123, id))
        );
        for bad in [
            "",
            "!!!",
            "bm9wZQ",
            &URL_SAFE_NO_PAD.encode("12.not-a-uuid"),
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
