-- No side channel on dedup (issue 15).
-- A media item made from content its owner did not hold before shows
-- `processing` until this time (Unix ms), however long ago the content was
-- processed for someone else; an attachment made from it keeps the same time.
alter table media add column shown_after bigint;
alter table attachments add column shown_after bigint;
-- A completed session's answer, so a repeated `complete` gives the same one:
-- 1 when the caller held the content already (its bytes were dropped).
alter table uploads add column deduplicated bigint;
