-- What each user holds, kept with every media row written or deleted, so a
-- quota check reads one row instead of summing the user's media (issue 15).
create table user_usage (
    owner_id     text primary key,
    media        bigint not null,
    media_bytes  bigint not null
);
insert into user_usage (owner_id, media, media_bytes)
    select m.owner_id, count(*), cast(coalesce(sum(b.size), 0) as bigint)
    from media m join blobs b on b.blake3 = m.blake3
    group by m.owner_id;
