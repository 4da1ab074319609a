-- The consistency check (issue 16) walks the store's keys and the keys the
-- rows name side by side, both in byte order (SQLite's own collation).
create index blobs_by_storage_key on blobs (storage_key);
create index variants_by_storage_key on variants (storage_key);
create index uploads_open_by_storage_key on uploads (storage_key)
    where state in ('receiving', 'completing');
create index uploads_open_by_multipart on uploads (multipart_id)
    where state in ('receiving', 'completing');
-- When a check found the content's original missing from the store (its
-- media show failed); a later check does not report it as new.
alter table blobs add column missing_at bigint;
