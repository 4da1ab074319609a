-- A device's realtime connection follows its user's uploads still open.
create index uploads_open_by_owner on uploads (owner_id) where state in ('receiving', 'completing');
