-- tus 1.0 (issue 17): an upload session taken through /v1/tus/. tus sends
-- bytes at an offset, in any amounts; whole parts go through the chunk
-- path, and the bytes that do not fill a part yet wait here (durably: the
-- next PATCH may reach another node, or come after a restart). One PATCH at
-- a time holds the session's lock.
create table tus_uploads (
    upload_id   text primary key references uploads (upload_id) on delete cascade,
    lock_token  text,
    lock_until  bigint,
    tail        blob not null default x''
);
