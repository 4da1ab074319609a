//! Many senders at once: `seq` stays gapless, a retried send stays one
//! message, and a device polling the sync log meanwhile misses nothing and
//! gets nothing twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use media_e2e::both_sets;

const SENDERS: usize = 16;
const EACH: usize = 50;

both_sets!(concurrent_senders_get_gapless_seqs_and_sync_misses_nothing);
async fn concurrent_senders_get_gapless_seqs_and_sync_misses_nothing(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let names: Vec<String> = (0..SENDERS).map(|i| format!("sender-{i}")).collect();
    let owner = app.user("owner");
    let others: Vec<&str> = names.iter().map(String::as_str).collect();
    let room = group(&owner, &others).await;
    let reader = app.user("sender-0");
    // Where the reader's device is before anyone sends.
    let (_, start) = sync_all(&reader, None).await;

    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let done = done.clone();
        let (app_ref, token) = (&app, reader.token.clone());
        let start = start.clone();
        async move {
            let device = User {
                app: app_ref,
                token,
            };
            let mut cursor = start;
            let mut events = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let (page, next) = sync_all(&device, Some(cursor)).await;
                events.extend(page);
                cursor = next;
                if finished {
                    return events;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let senders = async {
        let sends = names.iter().map(|name| {
            let user = app.user(name);
            let room = room.clone();
            async move {
                let mut seqs = Vec::with_capacity(EACH);
                for i in 0..EACH {
                    let m = say(&user, &room, &format!("{name} #{i}")).await;
                    seqs.push(m["seq"].as_u64().expect("seq"));
                }
                seqs
            }
        });
        let all = futures_util::future::join_all(sends).await;
        done.store(true, Ordering::SeqCst);
        all
    };
    let (seqs, events) = tokio::join!(senders, poller);

    let total = SENDERS * EACH;
    let mut all: Vec<u64> = seqs.iter().flatten().copied().collect();
    for per_sender in &seqs {
        assert!(
            per_sender.windows(2).all(|w| w[0] < w[1]),
            "a sender's own seqs rise"
        );
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=total as u64).collect::<Vec<_>>(),
        "1..{total}, no gap, no duplicate"
    );

    let created: Vec<u64> = events
        .iter()
        .filter(|e| e["kind"] == "message_created")
        .map(|e| e["message"]["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(created.len(), total, "every message once");
    assert_eq!(
        created,
        (1..=total as u64).collect::<Vec<_>>(),
        "in order, none skipped, none twice"
    );
    let history = history(&reader, &room, 0).await;
    assert_eq!(history.len(), 200, "a page is at most 200");
    app.stop().await;
}

both_sets!(a_retried_send_is_one_message);
async fn a_retried_send_is_one_message(set: BackendSet) {
    let app = spawn(set, |_| {}).await;
    let alice = app.user("alice");
    let chat = direct(&alice, "bob").await;
    let body = json!({"client_message_id": client_id(), "text": "once"});
    let first = json_of(post_message(&alice, &chat, &body).await, 201).await;
    let again = json_of(post_message(&alice, &chat, &body).await, 200).await;
    assert_eq!(first, again, "the identical message");

    // Three at once, as a client retrying over a bad network.
    let racing = json!({"client_message_id": client_id(), "text": "racing"});
    let responses =
        futures_util::future::join_all((0..3).map(|_| post_message(&alice, &chat, &racing))).await;
    let mut statuses = Vec::new();
    let mut ids = BTreeSet::new();
    for r in responses {
        statuses.push(r.status().as_u16());
        ids.insert(r.json::<Value>().await.expect("json")["message_id"].to_string());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 201]);
    assert_eq!(ids.len(), 1, "one message");
    let seen = history(&alice, &chat, 0).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    // A reply names a message the sender sees.
    let reply = json!({"client_message_id": client_id(), "text": "re", "reply_to_seq": 1});
    let answered = json_of(post_message(&alice, &chat, &reply).await, 201).await;
    assert_eq!(answered["reply_to_seq"], 1);
    assert_eq!(answered["seq"], 3);
    // The same client id in another conversation, or from another sender, is another message.
    let other = group(&alice, &["bob"]).await;
    json_of(post_message(&alice, &other, &body).await, 201).await;
    let bob = app.user("bob");
    let from_bob = json_of(post_message(&bob, &chat, &body).await, 201).await;
    assert_eq!(
        from_bob["seq"], 4,
        "the retries and the refusals left no gap"
    );
    app.stop().await;
}
