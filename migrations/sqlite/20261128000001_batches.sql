-- Batch work the operators start (issue 16): reprocessing by selector and
-- consistency checks. A reprocessing batch's jobs are ordinary jobs with its
-- id, enqueued at once and paced by `run_after`; pausing parks its queued
-- jobs (state `paused`), cancelling deletes them.
create table batches (
    batch_id     text primary key,
    -- reprocess | fsck
    kind         text not null,
    -- running | paused | cancelled | done
    state        text not null,
    -- the request's selector (JSON)
    selector     text not null,
    -- milliseconds between two jobs' starts (0: as fast as workers go)
    interval_ms  bigint not null,
    matched      bigint not null,
    enqueued     bigint not null,
    bytes        bigint not null,
    created_by   text not null,
    started_at   bigint not null,
    paused_at    bigint,
    finished_at  bigint,
    -- an fsck's findings (JSON), as it goes
    report       text
);
create index batches_by_start on batches (started_at desc, batch_id desc);

alter table jobs add column batch_id text;
-- the presets to make (comma-separated names); null: all of them
alter table jobs add column presets text;
create index jobs_by_batch on jobs (batch_id, state) where batch_id is not null;
