-- The messaging core: conversations, their members (with each member's
-- receipt marks), messages with a gapless `seq` per conversation,
-- attachments (media references to a content, owned by a message), the
-- history of receipts, and the sync log every device catches up from.
-- Writing a message touches its conversation, its own rows and the sender's
-- marks: never one row per member.

create table conversations (
    conversation_id  text primary key,
    -- direct | group
    kind             text not null,
    title            text,
    -- a direct conversation's pair: one conversation per pair
    direct_key       text unique,
    created_by       text not null,
    last_seq         bigint not null,
    last_activity    bigint not null,
    created_at       bigint not null
);

create table chat_members (
    conversation_id  text not null references conversations (conversation_id),
    user_id          text not null,
    -- owner | admin | member
    role             text not null,
    -- the member reads messages after this seq
    joined_seq       bigint not null,
    -- the sync log's events about the conversation the member gets: from
    -- the one that made them a member to the one that ended it
    joined_event     bigint not null,
    left_event       bigint,
    delivered_seq    bigint not null,
    read_seq         bigint not null,
    primary key (conversation_id, user_id)
);

create index chat_members_by_user on chat_members (user_id, conversation_id);

create table messages (
    conversation_id    text not null references conversations (conversation_id),
    seq                bigint not null,
    -- a v7 UUID: unique by construction, never looked up (a message is
    -- addressed by its conversation and seq), so not indexed
    message_id         text not null,
    client_message_id  text not null,
    sender             text not null,
    -- text | member_added | member_removed | member_left | role_changed
    kind               text not null,
    body               text,
    -- system messages: the member it is about, and a role change's new role
    member             text,
    role               text,
    reply_to_seq       bigint,
    forwarded          bigint not null,
    created_at         bigint not null,
    edited_at          bigint,
    deleted_at         bigint,
    primary key (conversation_id, seq)
);

-- A client retrying a send gets its message back, never a second one.
create unique index messages_by_client_id on messages (conversation_id, sender, client_message_id);

create table attachments (
    media_id         text primary key,
    conversation_id  text not null,
    message_seq      bigint not null,
    position         bigint not null,
    blake3           text not null references blobs (blake3),
    file_name        text not null,
    caption          text,
    -- whose upload the content came from: only they get its exact bytes
    uploader         text not null,
    created_at       bigint not null,
    foreign key (conversation_id, message_seq) references messages (conversation_id, seq)
);

create index attachments_by_message on attachments (conversation_id, message_seq, position);
create index attachments_by_blake3 on attachments (blake3);

create table chat_receipts (
    conversation_id  text not null,
    user_id          text not null,
    delivered_seq    bigint not null,
    read_seq         bigint not null,
    at               bigint not null
);

create index chat_receipts_by_member on chat_receipts (conversation_id, user_id, delivered_seq);

-- The sync log. SQLite has one writer, so events become visible in the
-- order of their ids: tx is always 0 and the position is the id.
create table chat_events (
    event_id         integer not null primary key autoincrement,
    tx               bigint not null default 0,
    conversation_id  text not null,
    -- conversation_created | member_added | member_removed | role_changed |
    -- message_created | message_edited | message_deleted | receipt
    kind             text not null,
    at               bigint not null,
    actor            text,
    seq              bigint,
    member           text,
    delivered_seq    bigint,
    read_seq         bigint
);

-- (No index on (tx, event_id): tx is always 0 here, so the key's order is the log's.)
create index chat_events_by_conversation on chat_events (conversation_id, tx, event_id);
-- The retention sweep finds old events by time.
create index chat_events_by_time on chat_events (at);

-- Every message (a text, a forward or a system message) is its
-- conversation's last, an event of the sync log, and read by its sender up
-- to it: all written by the insert itself, so no message can exist without
-- its event, and a post is one statement.
create trigger messages_posted after insert on messages
begin
    update conversations set last_seq = new.seq, last_activity = new.created_at
     where conversation_id = new.conversation_id and last_seq < new.seq;
    update chat_members set delivered_seq = new.seq, read_seq = new.seq
     where conversation_id = new.conversation_id and user_id = new.sender;
    insert into chat_events (conversation_id, kind, at, actor, seq)
    values (new.conversation_id, 'message_created', new.created_at, new.sender, new.seq);
end;

-- Where the retention sweep has deleted up to: an older cursor is expired.
create table chat_sync_horizon (
    singleton  bigint primary key,
    tx         bigint not null,
    event_id   bigint not null
);

insert into chat_sync_horizon (singleton, tx, event_id) values (1, 0, 0);
