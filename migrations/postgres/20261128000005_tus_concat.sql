-- tus concatenation (issue 17): `partial` for an upload that is a piece of
-- a later one (its last byte completes nothing), `final;URL URL…` for the
-- upload made of pieces (as HEAD repeats it). Null for an ordinary one.
alter table tus_uploads add column concat text;
-- The part the tail is the head of: once that part is recorded (the PATCH
-- that stored it was cut off before it could clear the tail, or the node
-- died), the tail no longer counts.
alter table tus_uploads add column tail_part bigint not null default 0;
