-- What a content's header told at completion (issue 18): an image's width
-- and height, shown while it is processed. Kept when processing replaces
-- `probe`, so a copy of someone else's content shown as new (masked) shows
-- exactly what new content shows, whatever processing later found.
alter table blobs add column header_probe text;
