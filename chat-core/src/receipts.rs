//! Receipts: each member's `delivered_seq` and `read_seq` in a conversation.
//! They only move forward, reading implies delivery, and a message's status
//! for its sender is derived from the other members' marks, so writing a
//! message costs the same whatever the group's size.

/// One member's marks in one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Marks {
    /// Every message up to this `seq` reached one of the member's devices.
    pub delivered_seq: u64,
    /// The member has read every message up to this `seq`.
    pub read_seq: u64,
}

/// Why a receipt is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Neither mark was given.
    #[error("give delivered_seq, read_seq or both")]
    Empty,
    /// A mark past the conversation's last message.
    #[error("seq {seq} is past the conversation's last message ({last_seq})")]
    PastLast {
        /// The mark given.
        seq: u64,
        /// The conversation's last `seq`.
        last_seq: u64,
    },
}

impl Marks {
    /// The marks after a receipt: a lower value than held is ignored (not an
    /// error: receipts from several devices cross), reading implies delivery,
    /// and nothing may point past `last_seq`.
    pub fn advance(
        self,
        delivered: Option<u64>,
        read: Option<u64>,
        last_seq: u64,
    ) -> Result<Marks, ReceiptError> {
        if delivered.is_none() && read.is_none() {
            return Err(ReceiptError::Empty);
        }
        for seq in delivered.into_iter().chain(read) {
            if seq > last_seq {
                return Err(ReceiptError::PastLast { seq, last_seq });
            }
        }
        let read_seq = self.read_seq.max(read.unwrap_or(0));
        let delivered_seq = self.delivered_seq.max(delivered.unwrap_or(0)).max(read_seq);
        Ok(Marks {
            delivered_seq,
            read_seq,
        })
    }
}

/// A message's status for its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Stored; not every other member has it yet.
    Sent,
    /// Every other member has it on a device.
    Delivered,
    /// Every other member has read it.
    Read,
}

impl Status {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }

    /// The status of message `seq` given the marks of every member other
    /// than its sender. With no other member, it is `Sent`.
    pub fn of(seq: u64, others: &[Marks]) -> Status {
        if others.is_empty() {
            return Status::Sent;
        }
        let min_read = others.iter().map(|m| m.read_seq).min().unwrap_or(0);
        let min_delivered = others.iter().map(|m| m.delivered_seq).min().unwrap_or(0);
        if min_read >= seq {
            Status::Read
        } else if min_delivered >= seq {
            Status::Delivered
        } else {
            Status::Sent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(delivered_seq: u64, read_seq: u64) -> Marks {
        Marks {
            delivered_seq,
            read_seq,
        }
    }

    #[test]
    fn marks_never_go_backwards_and_reading_implies_delivery() {
        let m = Marks::default().advance(Some(5), None, 10).expect("ok");
        assert_eq!(m, marks(5, 0));
        assert_eq!(
            m.advance(Some(3), None, 10),
            Ok(marks(5, 0)),
            "lower is ignored"
        );
        assert_eq!(
            m.advance(None, Some(7), 10),
            Ok(marks(7, 7)),
            "read implies delivered"
        );
        assert_eq!(marks(7, 7).advance(Some(9), Some(2), 10), Ok(marks(9, 7)));
    }

    #[test]
    fn receipts_past_the_last_message_or_empty_are_refused() {
        assert_eq!(
            Marks::default().advance(Some(11), None, 10),
            Err(ReceiptError::PastLast {
                seq: 11,
                last_seq: 10
            })
        );
        assert_eq!(
            Marks::default().advance(Some(1), Some(11), 10),
            Err(ReceiptError::PastLast {
                seq: 11,
                last_seq: 10
            })
        );
        assert_eq!(
            Marks::default().advance(None, None, 10),
            Err(ReceiptError::Empty)
        );
    }

    #[test]
    fn the_senders_status_follows_the_slowest_other_member() {
        let others = [marks(5, 3), marks(9, 9)];
        assert_eq!(Status::of(3, &others), Status::Read);
        assert_eq!(Status::of(4, &others), Status::Delivered);
        assert_eq!(Status::of(6, &others), Status::Sent);
        assert_eq!(Status::of(1, &[]), Status::Sent);
        assert!(Status::Sent < Status::Delivered && Status::Delivered < Status::Read);
    }
}
