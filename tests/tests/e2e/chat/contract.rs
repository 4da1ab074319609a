//! The chat store's contract, on the seam itself, on both databases: a
//! write whose premise changed is refused, marks never go down, a member
//! gets a conversation's events only while a member, retention moves the
//! horizon, and (PostgreSQL, many writers) the sync log never passes a
//! transaction still running.

use chat_core::conversation::Role;
use chat_core::receipts::Marks;
use chat_core::sync::{EventKind, SyncCursor};
use media_api::ids::{ClientMessageId, ConversationId, UserId};
use media_api::metadata_store::chat::{
    Actor, ChatStore, ChatStoreError, MemberChange, NewMessage, Refusal,
};
use media_api::metadata_store::{self, Stores};
use media_e2e::both_sets;

use super::*;

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user")
}

async fn stores(set: BackendSet) -> (Stores, media_api::config::Settings, tempfile::TempDir) {
    let (settings, dir) = test_settings(set).await;
    let stores = metadata_store::from_settings(&settings)
        .await
        .expect("store");
    (stores, settings, dir)
}

fn text(conversation: ConversationId, sender: &UserId, body: &str) -> NewMessage {
    NewMessage {
        conversation_id: conversation,
        sender: sender.clone(),
        client_message_id: ClientMessageId::generate(),
        text: Some(body.to_owned()),
        attachments: Vec::new(),
        reply_to_seq: None,
        forwarded: false,
    }
}

async fn all_events(chat: &dyn ChatStore, who: &UserId) -> Vec<(EventKind, Option<u64>)> {
    let page = chat
        .sync(who, SyncCursor::default(), 1000)
        .await
        .expect("sync");
    page.events.iter().map(|e| (e.kind, e.seq)).collect()
}

both_sets!(the_chat_store_keeps_its_contract);
async fn the_chat_store_keeps_its_contract(set: BackendSet) {
    let (stores, _settings, _dir) = stores(set).await;
    let chat = stores.chat.as_ref();
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let room = ConversationId::generate();
    chat.create_group(room, &alice, "Trip", &[bob.clone(), carol.clone()])
        .await
        .expect("group");

    // A decision made on a role that changed meanwhile is refused.
    let stale = chat
        .change_member(
            room,
            &Actor {
                user: alice.clone(),
                role: Role::Admin,
            },
            &MemberChange::Add {
                user: user("dave"),
                max_members: 10,
            },
        )
        .await;
    assert!(
        matches!(stale, Err(ChatStoreError::Refused(Refusal::Stale))),
        "{stale:?}"
    );
    let owner = Actor {
        user: alice.clone(),
        role: Role::Owner,
    };
    let target_moved = chat
        .change_member(
            room,
            &owner,
            &MemberChange::Remove {
                user: bob.clone(),
                role: Role::Admin,
            },
        )
        .await;
    assert!(matches!(
        target_moved,
        Err(ChatStoreError::Refused(Refusal::Stale))
    ));
    let full = chat
        .change_member(
            room,
            &owner,
            &MemberChange::Add {
                user: user("dave"),
                max_members: 3,
            },
        )
        .await;
    assert!(matches!(
        full,
        Err(ChatStoreError::Refused(Refusal::GroupFull))
    ));
    assert!(matches!(
        chat.post_message(&text(room, &user("mallory"), "hi")).await,
        Err(ChatStoreError::Refused(Refusal::NotMember))
    ));

    // Marks only rise.
    for body in ["one", "two", "three"] {
        chat.post_message(&text(room, &alice, body))
            .await
            .expect("post");
    }
    let up = Marks {
        delivered_seq: 3,
        read_seq: 2,
    };
    assert_eq!(chat.raise_marks(room, &bob, up).await.expect("raise"), up);
    let lower = Marks {
        delivered_seq: 1,
        read_seq: 1,
    };
    assert_eq!(
        chat.raise_marks(room, &bob, lower).await.expect("raise"),
        up
    );

    // Carol is removed after message 3: she gets the events up to her removal.
    chat.change_member(
        room,
        &owner,
        &MemberChange::Remove {
            user: carol.clone(),
            role: Role::Member,
        },
    )
    .await
    .expect("remove");
    chat.post_message(&text(room, &alice, "after carol"))
        .await
        .expect("post");
    let carols = all_events(chat, &carol).await;
    assert_eq!(
        carols.first().map(|e| e.0),
        Some(EventKind::ConversationCreated)
    );
    assert_eq!(
        carols.last(),
        Some(&(EventKind::MemberRemoved, None)),
        "{carols:?}"
    );
    assert!(
        !carols.contains(&(EventKind::MessageCreated, Some(5))),
        "{carols:?}"
    );
    let bobs = all_events(chat, &bob).await;
    assert_eq!(
        bobs.last(),
        Some(&(EventKind::MessageCreated, Some(5))),
        "{bobs:?}"
    );
    assert!(bobs.contains(&(EventKind::Receipt, None)));

    // Retention: everything older than now goes, and the horizon moves past it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let purged = chat
        .purge_events(media_api::ids::now_ms())
        .await
        .expect("purge");
    assert!(purged as usize >= bobs.len(), "{purged} < {}", bobs.len());
    let horizon = chat.sync_horizon().await.expect("horizon");
    assert!(horizon > SyncCursor::default());
    assert!(all_events(chat, &bob).await.is_empty());
    assert!(all_events(chat, &carol).await.is_empty());
}

/// Every writer of a conversation takes the same lock: the key the service
/// computes is the one the `messages_numbered` trigger computes.
#[tokio::test]
async fn the_trigger_and_the_service_lock_a_conversation_with_one_key() {
    use secrecy::ExposeSecret;
    let (_stores, settings, _dir) = stores(BackendSet::Real).await;
    let url = settings.database_url.expect("url");
    let pool = sqlx::PgPool::connect(url.expose_secret())
        .await
        .expect("pg");
    for _ in 0..64 {
        let id = ConversationId::generate();
        let in_sql: i64 = sqlx::query_scalar(
            "select ('x' || substr(replace($1, '-', ''), 1, 16))::bit(64)::bigint \
             # ('x' || substr(replace($1, '-', ''), 17, 16))::bit(64)::bigint",
        )
        .bind(id.to_string())
        .fetch_one(&pool)
        .await
        .expect("key");
        assert_eq!(
            in_sql,
            media_api::metadata_store::chat::lock_key(id),
            "{id}"
        );
    }
}

/// PostgreSQL has many writers: a transaction that wrote an event but has
/// not committed holds the log back. Without that rule a reader would pass
/// it (its id is lower than the events committed after it) and never see it.
#[tokio::test]
async fn the_sync_log_never_passes_a_transaction_still_running() {
    use secrecy::ExposeSecret;
    let (stores, settings, _dir) = stores(BackendSet::Real).await;
    let chat = stores.chat.as_ref();
    let (alice, bob) = (user("alice"), user("bob"));
    let (pair, _) = chat
        .open_direct(ConversationId::generate(), &alice, &bob)
        .await
        .expect("direct");
    let pair = pair.conversation_id;
    let (first, _) = {
        let page = chat
            .sync(&alice, SyncCursor::default(), 1000)
            .await
            .expect("sync");
        (page.reached, page.events.len())
    };

    let url = settings.database_url.expect("url");
    let pool = sqlx::PgPool::connect(url.expose_secret())
        .await
        .expect("pg");
    let mut slow = pool.begin().await.expect("begin");
    sqlx::query(
        "insert into chat_events (conversation_id, kind, at, actor, member, delivered_seq, \
         read_seq) values ($1, 'receipt', 0, 'bob', 'bob', 0, 0)",
    )
    .bind(pair.to_string())
    .execute(&mut *slow)
    .await
    .expect("held event");
    for body in ["a", "b", "c"] {
        chat.post_message(&text(pair, &alice, body))
            .await
            .expect("post");
    }
    let held = chat.sync(&alice, first, 1000).await.expect("sync");
    assert!(
        held.events.is_empty(),
        "events committed after a running transaction wait for it: {:?}",
        held.events
    );
    slow.commit().await.expect("commit");
    let page = chat.sync(&alice, held.reached, 1000).await.expect("sync");
    let kinds: Vec<(EventKind, Option<u64>)> =
        page.events.iter().map(|e| (e.kind, e.seq)).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Receipt, None),
            (EventKind::MessageCreated, Some(1)),
            (EventKind::MessageCreated, Some(2)),
            (EventKind::MessageCreated, Some(3)),
        ],
        "the held event once it commits, then the rest: none skipped"
    );
}
