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

-- The sync log. An event's position is (tx, event_id): tx is the writing
-- transaction's id, and readers take only events below the oldest running
-- transaction, so nothing commits behind a reader's cursor.
create table chat_events (
    event_id         bigserial primary key,
    tx               bigint not null default (pg_current_xact_id()::text::bigint),
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

create index chat_events_in_order on chat_events (tx, event_id);
create index chat_events_by_conversation on chat_events (conversation_id, tx, event_id);
-- The retention sweep finds old events by time.
create index chat_events_by_time on chat_events (at);

-- Every message (a text, a forward or a system message) is its
-- conversation's last, an event of the sync log, and read by its sender up
-- to it: all written by the insert itself, so no message can exist without
-- its event, and a post is one statement.
create function messages_posted() returns trigger language plpgsql as $$
begin
    update conversations set last_seq = new.seq, last_activity = new.created_at
     where conversation_id = new.conversation_id and last_seq < new.seq;
    update chat_members set delivered_seq = new.seq, read_seq = new.seq
     where conversation_id = new.conversation_id and user_id = new.sender;
    insert into chat_events (conversation_id, kind, at, actor, seq)
    values (new.conversation_id, 'message_created', new.created_at, new.sender, new.seq);
    return null;
end
$$;

create trigger messages_posted after insert on messages
    for each row execute function messages_posted();

-- A text message inserted with seq 0 is numbered by the insert itself, so a
-- post is one statement in a transaction of its own. The trigger first takes
-- the conversation's lock (the key every writer of it uses: its id folded to
-- 64 bits), before the transaction writes anything, so the transaction's id
-- follows the lock (the sync log's order, chat-core's `sync`); then, seeing
-- what is committed by then, checks that the sender is a member, has not
-- posted this client id, and replies to a message they see; then takes the
-- next seq.
create function messages_numbered() returns trigger language plpgsql as $$
declare
    hex text := replace(new.conversation_id, '-', '');
    joined bigint;
begin
    if new.seq <> 0 then
        return new;
    end if;
    perform pg_advisory_xact_lock(('x' || substr(hex, 1, 16))::bit(64)::bigint
                                  # ('x' || substr(hex, 17, 16))::bit(64)::bigint);
    select joined_seq into joined from chat_members
     where conversation_id = new.conversation_id and user_id = new.sender
       and left_event is null;
    if not found then
        raise exception 'not a member' using errcode = 'MC001';
    end if;
    if exists (select 1 from messages where conversation_id = new.conversation_id
               and sender = new.sender and client_message_id = new.client_message_id) then
        raise exception 'posted before' using errcode = 'MC002';
    end if;
    update conversations set last_seq = last_seq + 1, last_activity = new.created_at
     where conversation_id = new.conversation_id returning last_seq into new.seq;
    if new.reply_to_seq is not null
       and (new.reply_to_seq <= joined or new.reply_to_seq >= new.seq) then
        raise exception 'no such message to reply to' using errcode = 'MC003';
    end if;
    return new;
end
$$;

create trigger messages_numbered before insert on messages
    for each row execute function messages_numbered();

-- Where the retention sweep has deleted up to: an older cursor is expired.
create table chat_sync_horizon (
    singleton  bigint primary key,
    tx         bigint not null,
    event_id   bigint not null
);

insert into chat_sync_horizon (singleton, tx, event_id) values (1, 0, 0);
