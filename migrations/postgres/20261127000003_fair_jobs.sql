-- Processing is fair between users (issue 15): a job's rank is how many
-- jobs its owner had queued when it was enqueued, and workers take the
-- lowest rank first within a priority, so one user's thousand uploads
-- interleave with everyone else's instead of going first.
alter table jobs add column owner_id text;
alter table jobs add column fair_rank bigint not null default 0;
drop index jobs_queued;
create index jobs_queued on jobs (priority, fair_rank, run_after) where state = 'queued';
create index jobs_queued_by_owner on jobs (owner_id) where state = 'queued';
