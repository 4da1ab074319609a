-- The janitor finds completions cut off by a timeout or a crash (issue 15).
create index uploads_completing_since on uploads (updated_at) where state = 'completing';
