//! The sync log (events, reading a user's events in order, retention),
//! receipt marks and their history, and the one statement that starts a
//! content's grace period once nothing references it.

use chat_core::receipts::Marks;
use chat_core::sync::{EventKind, SyncCursor};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::chat_rows::conversation_id_in;
use super::{SqlMetadataStore, get_u64, to_i64};
use crate::ids::{ConversationId, UserId, now_ms};
use crate::metadata_store::chat::{
    ChatStoreError, EventRecord, ReceiptRecord, Refusal, SyncRecords,
};
use crate::metadata_store::{Dialect, MetadataError};

type Tx = Transaction<'static, Any>;

/// PostgreSQL's visibility bound: a transaction id below which every
/// transaction that may write this database's events has ended (committed,
/// or never will). It is the oldest transaction still running in this
/// database, or the next id to be given when none runs. Transactions of
/// other databases on the same server cannot write our events, so they are
/// not waited for (the cluster-wide `pg_snapshot_xmin` would hold every
/// reader back behind any long transaction anywhere).
///
/// Two statements, in this order: the next id first, then the running
/// transactions. A transaction given an id before the first is seen by the
/// second unless it has ended; one given an id after it gets one at or above
/// the bound. Answers the bound and that next id (the bound when nothing
/// runs).
async fn visibility_bound(store: &SqlMetadataStore) -> Result<(i64, i64), MetadataError> {
    let next: i64 =
        sqlx::query_scalar("select pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            .fetch_one(&store.pool)
            .await?;
    let oldest: Option<i64> = sqlx::query_scalar(
        "select min(backend_xid::text::bigint) from pg_stat_activity \
         where datname = current_database() and backend_xid is not null",
    )
    .fetch_one(&store.pool)
    .await?;
    Ok((oldest.map_or(next, |o| o.min(next)), next))
}

/// A position as the database compares it; past the range is past everything.
fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What an event is about, beside its conversation.
#[derive(Debug, Clone, Copy)]
pub(super) enum About<'a> {
    /// The conversation itself (its creation).
    Conversation,
    /// A member (added, removed, given a role).
    Member(&'a UserId),
    /// A message (posted, edited, deleted), by `seq`.
    Message(u64),
    /// The actor's receipt marks.
    Receipt(Marks),
}

/// Appends an event by `actor` to the sync log; answers its id.
pub(super) async fn insert_event(
    tx: &mut Tx,
    id: ConversationId,
    kind: EventKind,
    actor: &UserId,
    about: About<'_>,
) -> Result<i64, ChatStoreError> {
    let (seq, member, marks) = match about {
        About::Conversation => (None, None, None),
        About::Member(user) => (None, Some(user), None),
        About::Message(seq) => (Some(seq), None, None),
        About::Receipt(marks) => (None, Some(actor), Some(marks)),
    };
    Ok(sqlx::query_scalar(
        "insert into chat_events (conversation_id, kind, at, actor, seq, member, \
         delivered_seq, read_seq) values ($1, $2, $3, $4, $5, $6, $7, $8) returning event_id",
    )
    .bind(id.to_string())
    .bind(kind.as_str())
    .bind(now_ms())
    .bind(actor.as_str())
    .bind(seq.map(to_i64).transpose()?)
    .bind(member.map(UserId::as_str))
    .bind(marks.map(|m| to_i64(m.delivered_seq)).transpose()?)
    .bind(marks.map(|m| to_i64(m.read_seq)).transpose()?)
    .fetch_one(&mut **tx)
    .await?)
}

/// Starts the content's grace period when no media item and no attachment
/// references it any more.
pub(super) async fn mark_if_unreferenced(tx: &mut Tx, blake3: &str) -> Result<(), MetadataError> {
    // Lock the blob row first. Two transactions dropping the last two
    // references at once would otherwise each still see the other's (not
    // yet committed) reference and neither would mark it: the content would
    // never be collected. Locked, the second waits for the first and then
    // (a new statement, a new snapshot under read committed) sees it gone.
    sqlx::query("update blobs set unreferenced_since = unreferenced_since where blake3 = $1")
        .bind(blake3)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "update blobs set unreferenced_since = $2 where blake3 = $1 \
         and unreferenced_since is null \
         and not exists (select 1 from media where media.blake3 = blobs.blake3) \
         and not exists (select 1 from attachments a where a.blake3 = blobs.blake3)",
    )
    .bind(blake3)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records marks in the receipts' history (the times `receipts` reads).
async fn record_marks(
    tx: &mut Tx,
    id: ConversationId,
    user: &UserId,
    marks: Marks,
) -> Result<(), ChatStoreError> {
    sqlx::query(
        "insert into chat_receipts (conversation_id, user_id, delivered_seq, read_seq, at) \
         values ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(user.as_str())
    .bind(to_i64(marks.delivered_seq)?)
    .bind(to_i64(marks.read_seq)?)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn raise_marks(
    store: &SqlMetadataStore,
    id: ConversationId,
    user: &UserId,
    to: Marks,
) -> Result<Marks, ChatStoreError> {
    let mut tx = store.pool.begin().await?;
    // Only ever up: two devices' receipts crossing leave the higher marks.
    let raised = sqlx::query(
        "update chat_members set \
         delivered_seq = case when $3 > delivered_seq then $3 else delivered_seq end, \
         read_seq = case when $4 > read_seq then $4 else read_seq end \
         where conversation_id = $1 and user_id = $2 and left_event is null \
         and ($3 > delivered_seq or $4 > read_seq) returning delivered_seq, read_seq",
    )
    .bind(id.to_string())
    .bind(user.as_str())
    .bind(to_i64(to.delivered_seq)?)
    .bind(to_i64(to.read_seq)?)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = raised else {
        tx.rollback().await?;
        return match store.member_marks(id, user).await? {
            Some(marks) => Ok(marks),
            None => Err(Refusal::NotMember.into()),
        };
    };
    let marks = Marks {
        delivered_seq: get_u64(&row, "delivered_seq")?,
        read_seq: get_u64(&row, "read_seq")?,
    };
    record_marks(&mut tx, id, user, marks).await?;
    insert_event(&mut tx, id, EventKind::Receipt, user, About::Receipt(marks)).await?;
    tx.commit().await?;
    Ok(marks)
}

impl SqlMetadataStore {
    async fn member_marks(
        &self,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<Marks>, MetadataError> {
        sqlx::query(
            "select delivered_seq, read_seq from chat_members \
             where conversation_id = $1 and user_id = $2 and left_event is null",
        )
        .bind(id.to_string())
        .bind(user.as_str())
        .fetch_optional(&self.reads)
        .await?
        .map(|row| {
            Ok(Marks {
                delivered_seq: get_u64(&row, "delivered_seq")?,
                read_seq: get_u64(&row, "read_seq")?,
            })
        })
        .transpose()
    }
}

pub(super) async fn receipts(
    store: &SqlMetadataStore,
    id: ConversationId,
    seq: u64,
    except: &UserId,
) -> Result<Vec<ReceiptRecord>, MetadataError> {
    // Marks only rise, so a member's first history row at or past `seq` is
    // when the message reached them; sending a message later is reading
    // everything before it, so their first message at or past `seq` counts
    // too. Members who joined after it are not asked.
    let first = |mark: &str| {
        format!(
            "(select min(t.at) from (select r.at from chat_receipts r \
             where r.conversation_id = m.conversation_id and r.user_id = m.user_id \
             and r.{mark} >= $2 union all select o.created_at from messages o \
             where o.conversation_id = m.conversation_id and o.sender = m.user_id \
             and o.seq >= $2) t)"
        )
    };
    let rows = sqlx::query(&format!(
        "select m.user_id, {} as delivered_at, {} as read_at \
         from chat_members m where m.conversation_id = $1 and m.left_event is null \
         and m.joined_seq < $2 and m.user_id <> $3 order by m.user_id",
        first("delivered_seq"),
        first("read_seq")
    ))
    .bind(id.to_string())
    .bind(to_i64(seq)?)
    .bind(except.as_str())
    .fetch_all(&store.reads)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ReceiptRecord {
                user: UserId::parse(&row.try_get::<String, _>("user_id")?)
                    .map_err(MetadataError::Query)?,
                delivered_at: row.try_get("delivered_at")?,
                read_at: row.try_get("read_at")?,
            })
        })
        .collect()
}

fn event_from_row(row: &AnyRow) -> Result<EventRecord, MetadataError> {
    let kind: String = row.try_get("kind")?;
    let user = |column: &str| -> Result<Option<UserId>, MetadataError> {
        row.try_get::<Option<String>, _>(column)?
            .map(|u| UserId::parse(&u).map_err(MetadataError::Query))
            .transpose()
    };
    let delivered: Option<i64> = row.try_get("delivered_seq")?;
    let read: Option<i64> = row.try_get("read_seq")?;
    let unsigned = |v: i64| u64::try_from(v).map_err(|_| MetadataError::Query("negative".into()));
    Ok(EventRecord {
        position: SyncCursor {
            order: get_u64(row, "tx")?,
            id: get_u64(row, "event_id")?,
        },
        kind: EventKind::parse(&kind)
            .ok_or_else(|| MetadataError::Query(format!("unknown event kind {kind:?}")))?,
        conversation_id: conversation_id_in(row, "conversation_id")?,
        at: row.try_get("at")?,
        actor: user("actor")?,
        seq: row
            .try_get::<Option<i64>, _>("seq")?
            .map(unsigned)
            .transpose()?,
        member: user("member")?,
        marks: match (delivered, read) {
            (Some(d), Some(r)) => Some(Marks {
                delivered_seq: unsigned(d)?,
                read_seq: unsigned(r)?,
            }),
            _ => None,
        },
    })
}

/// The bound a read would use now, and the next transaction id (on SQLite
/// both the last event's id).
async fn bounds(store: &SqlMetadataStore) -> Result<(i64, i64), MetadataError> {
    match store.dialect {
        // Shared: many readers woken by one message ask at once.
        Dialect::Postgres => store.bounds.get((), || visibility_bound(store)).await,
        Dialect::Sqlite => {
            let last: i64 =
                sqlx::query_scalar("select coalesce(max(event_id), 0) from chat_events")
                    .fetch_one(&store.reads)
                    .await?;
            Ok((last, last))
        }
    }
}

/// Everything below `bound` (as `bounds` answers it) as a cursor.
fn everything_below(dialect: Dialect, bound: i64) -> SyncCursor {
    let bound = u64::try_from(bound).unwrap_or(0);
    match dialect {
        Dialect::Postgres => SyncCursor {
            order: bound.saturating_sub(1),
            id: i64::MAX as u64,
        },
        Dialect::Sqlite => SyncCursor {
            order: 0,
            id: bound,
        },
    }
}

pub(super) async fn now(store: &SqlMetadataStore) -> Result<SyncCursor, MetadataError> {
    let (bound, _) = bounds(store).await?;
    Ok(everything_below(store.dialect, bound))
}

pub(super) async fn sync(
    store: &SqlMetadataStore,
    user: &UserId,
    after: SyncCursor,
    limit: u32,
) -> Result<SyncRecords, MetadataError> {
    // The bound is read first, so every event below it is visible to the
    // read that follows (see `chat-core`'s `sync` module).
    let (bound, next) = bounds(store).await?;
    // A member gets a conversation's events from the one that made them a
    // member to the one that ended it, and none about a message from
    // before they joined (its edit or deletion).
    const SEEN: &str = "e.event_id >= m.joined_event \
         and (m.left_event is null or e.event_id <= m.left_event) \
         and (e.seq is null or e.seq > m.joined_seq)";
    const COLUMNS: &str = "e.event_id, e.tx, e.conversation_id, e.kind, e.at, e.actor, e.seq, \
         e.member, e.delivered_seq, e.read_seq";
    // A page reads at most `limit` events of each of the user's
    // conversations, never every event after the cursor: a device catching
    // up on a long backlog pays per page, not per event still to come.
    let sql = match store.dialect {
        // Each conversation's first `limit` (an index range each), merged.
        Dialect::Postgres => format!(
            "select {COLUMNS} from chat_members m cross join lateral ( \
             select e.* from chat_events e where e.conversation_id = m.conversation_id \
             and (e.tx, e.event_id) > ($2, $3) and e.tx < $4 and {SEEN} \
             order by e.tx, e.event_id limit $5) e \
             where m.user_id = $1 order by e.tx, e.event_id limit $5"
        ),
        // SQLite has no lateral join. The page ends, at the latest, at the
        // lowest of the conversations' `limit`-th events (a conversation
        // past it alone would fill the page), so only that range is read.
        // Every event's order is 0 here, so the range is on `event_id`
        // alone (a row comparison would not bound the index scan).
        Dialect::Sqlite => format!(
            "with m as (select conversation_id, joined_event, left_event, joined_seq \
             from chat_members where user_id = $1), \
             ends as (select min((select e.event_id from chat_events e \
             where e.conversation_id = m.conversation_id and e.tx = 0 \
             and e.event_id > $3 and e.event_id <= $4 and {SEEN} \
             order by e.event_id limit 1 offset $5 - 1)) as page_end from m) \
             select {COLUMNS} from chat_events e join m on m.conversation_id = e.conversation_id \
             where $2 = 0 and e.tx = 0 and e.event_id > $3 \
             and e.event_id <= coalesce((select page_end from ends), $4) and {SEEN} \
             order by e.event_id limit $5"
        ),
    };
    let rows = sqlx::query(&sql)
        .bind(user.as_str())
        .bind(bigint(after.order))
        .bind(bigint(after.id))
        .bind(bound)
        .bind(i64::from(limit))
        .fetch_all(&store.reads)
        .await?;
    let events = rows
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let reached = if events.len() >= limit as usize {
        events.last().map_or(after, |e| e.position)
    } else {
        // Everything of the user's below the bound is read.
        after.max(everything_below(store.dialect, bound))
    };
    let tip = reached.max(everything_below(store.dialect, next));
    Ok(SyncRecords {
        events,
        reached,
        tip,
    })
}

pub(super) async fn horizon(store: &SqlMetadataStore) -> Result<SyncCursor, MetadataError> {
    let row = sqlx::query("select tx, event_id from chat_sync_horizon where singleton = 1")
        .fetch_one(&store.reads)
        .await?;
    Ok(SyncCursor {
        order: get_u64(&row, "tx")?,
        id: get_u64(&row, "event_id")?,
    })
}

pub(super) async fn purge(store: &SqlMetadataStore, before: i64) -> Result<u64, MetadataError> {
    // Only below the visibility bound: an event still to commit must not
    // land behind the new horizon.
    let visible = match store.dialect {
        Dialect::Postgres => format!(" and tx < {}", visibility_bound(store).await?.0),
        Dialect::Sqlite => String::new(),
    };
    let mut tx = store.pool.begin().await?;
    let last = sqlx::query(&format!(
        "select tx, event_id from chat_events where at < $1{visible} \
         order by tx desc, event_id desc limit 1"
    ))
    .bind(before)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(last) = last else {
        tx.rollback().await?;
        return Ok(0);
    };
    let (order, id): (i64, i64) = (last.try_get("tx")?, last.try_get("event_id")?);
    let deleted = sqlx::query("delete from chat_events where (tx, event_id) <= ($1, $2)")
        .bind(order)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(
        "update chat_sync_horizon set tx = $1, event_id = $2 \
         where singleton = 1 and (tx, event_id) < ($1, $2)",
    )
    .bind(order)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(deleted)
}
