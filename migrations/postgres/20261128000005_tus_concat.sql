-- tus concatenation (issue 17): `partial` for an upload that is a piece of
-- a later one (its last byte completes nothing), `final;URL URL…` for the
-- upload made of pieces (as HEAD repeats it). Null for an ordinary one.
alter table tus_uploads add column concat text;
