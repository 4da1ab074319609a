-- The garbage collector looks only at blobs nobody references, oldest first.
create index blobs_unreferenced on blobs (unreferenced_since) where unreferenced_since is not null;

-- Instant dedup asks "does this user own this content?" without touching anyone else's media.
create index media_by_owner_blake3 on media (owner_id, blake3);
