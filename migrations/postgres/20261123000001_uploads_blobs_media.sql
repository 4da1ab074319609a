-- Upload sessions, their chunks, distinct contents (blobs) and the media users own.
-- Times are Unix milliseconds (bigint), the one time type both backends share.

create table uploads (
    upload_id        text primary key,
    owner_id         text not null,
    file_name        text not null,
    size             bigint not null,
    declared_type    text,
    declared_blake3  text,
    chunk_size       bigint not null,
    total_chunks     bigint not null,
    -- receiving | completing | completed | aborted | expired
    state            text not null,
    storage_key      text not null,
    multipart_id     text not null,
    media_id         text,
    created_at       bigint not null,
    updated_at       bigint not null,
    expires_at       bigint not null
);

create index uploads_receiving_by_expiry on uploads (expires_at) where state = 'receiving';

create table upload_chunks (
    upload_id       text not null references uploads (upload_id) on delete cascade,
    chunk_number    bigint not null,
    size            bigint not null,
    sha256          text not null,
    chaining_value  text not null,
    etag            text not null,
    created_at      bigint not null,
    primary key (upload_id, chunk_number)
);

create table blobs (
    blake3              text primary key,
    size                bigint not null,
    content_type        text not null,
    storage_key         text not null,
    created_at          bigint not null,
    -- set when the last media reference goes; the GC deletes after a grace period
    unreferenced_since  bigint
);

create table media (
    media_id    text primary key,
    owner_id    text not null,
    blake3      text not null references blobs (blake3),
    file_name   text not null,
    status      text not null,
    created_at  bigint not null,
    updated_at  bigint not null
);

create index media_by_owner on media (owner_id, created_at desc, media_id desc);
create index media_by_blake3 on media (blake3);
