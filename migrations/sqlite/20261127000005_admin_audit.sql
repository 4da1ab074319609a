-- Every call to the admin API (issue 16): who, when, what, with which
-- request, and the outcome. Ids are UUIDv7, so they sort by time.
create table admin_audit (
    audit_id   text primary key,
    at         bigint not null,
    admin_id   text not null,
    action     text not null,
    request    text,
    status     bigint not null
);
