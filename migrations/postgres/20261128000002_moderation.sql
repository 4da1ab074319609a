-- Blocked contents (issue 16): every media item and attachment of a blocked
-- content answers 451, a new upload of its bytes is refused, and its objects
-- are moved out of the served keys until it is unblocked.
create table blocked_contents (
    blake3      text primary key,
    reason      text not null,
    blocked_by  text not null,
    blocked_at  bigint not null
);
-- On the content's row too, so every media read carries it at no cost.
alter table blobs add column blocked_at bigint;
