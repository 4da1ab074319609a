-- Processing: a durable job queue, the variants it makes, and each content's
-- processing state (content uploaded twice is processed once, so the state
-- lives on the blob, not on the media).

create table jobs (
    job_id        text primary key,
    kind          text not null,
    blake3        text not null,
    -- the upload whose completion enqueued the job, for its `processed` event
    upload_id     text,
    -- lower runs first: live uploads 0, batch reprocessing 100
    priority      bigint not null,
    -- queued | running | done | dead
    state         text not null,
    attempts      bigint not null,
    max_attempts  bigint not null,
    run_after     bigint not null,
    lease_until   bigint,
    worker_id     text,
    last_error    text,
    created_at    bigint not null,
    updated_at    bigint not null
);

create index jobs_queued on jobs (priority, run_after) where state = 'queued';
create index jobs_running on jobs (lease_until) where state = 'running';

create table variants (
    blake3        text not null references blobs (blake3),
    preset        text not null,
    version       bigint not null,
    storage_key   text not null,
    content_type  text not null,
    size          bigint not null,
    width         bigint,
    height        bigint,
    duration_ms   bigint,
    created_at    bigint not null,
    primary key (blake3, preset, version)
);

-- pending | processing | ready | failed | skipped (a type we do not process)
alter table blobs add column processing text not null default 'pending';
alter table blobs add column processing_error text;
-- what probing found (JSON: width, height, duration_ms, codecs)
alter table blobs add column probe text;
