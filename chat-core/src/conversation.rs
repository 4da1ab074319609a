//! Conversations and their members: the kinds, the roles, and what each
//! role may do to whom.

/// A conversation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    /// Exactly two people, one conversation per pair.
    Direct,
    /// An owner, admins and members, up to the group limit.
    Group,
}

/// A member's role in a group (both people of a direct conversation are
/// `Member`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// An ordinary member.
    Member,
    /// May add and remove members and delete anyone's message.
    Admin,
    /// The group's creator: an admin who also changes roles.
    Owner,
}

named!(ConversationKind { Direct => "direct", Group => "group" });
named!(Role { Member => "member", Admin => "admin", Owner => "owner" });

/// Why a membership change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Direct conversations have no membership changes.
    #[error("a direct conversation's members do not change")]
    NotAGroup,
    /// The actor's role does not allow it.
    #[error("only the group's owner or an admin may do that")]
    NotAdmin,
    /// Only the owner changes roles, and no one changes the owner's.
    #[error("only the owner changes roles, and the owner's role does not change")]
    NotOwner,
    /// An admin may not remove another admin or the owner.
    #[error("an admin may remove members, not other admins or the owner")]
    Outranked,
    /// The owner leaves only after handing the group over.
    #[error("the owner must make someone else owner before leaving")]
    OwnerMustHandOver,
}

/// What one member does to another (or to themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Adds someone who is not a member.
    Add,
    /// Removes a member (`actor == target` is leaving).
    Remove {
        /// The target's current role.
        target: Role,
        /// Whether the actor is the target.
        leaving: bool,
    },
    /// Gives a member another role.
    SetRole {
        /// The target's current role.
        target: Role,
        /// The role asked for.
        to: Role,
    },
}

/// Whether a member with role `actor` may make `change` in a conversation
/// of `kind`.
pub fn may_change(
    kind: ConversationKind,
    actor: Role,
    change: Change,
) -> Result<(), MembershipError> {
    if kind == ConversationKind::Direct {
        return Err(MembershipError::NotAGroup);
    }
    match change {
        Change::Add if actor >= Role::Admin => Ok(()),
        Change::Add => Err(MembershipError::NotAdmin),
        Change::Remove {
            target,
            leaving: true,
        } => {
            if target == Role::Owner {
                Err(MembershipError::OwnerMustHandOver)
            } else {
                Ok(())
            }
        }
        Change::Remove { target, .. } => match actor {
            Role::Member => Err(MembershipError::NotAdmin),
            Role::Admin if target >= Role::Admin => Err(MembershipError::Outranked),
            Role::Admin | Role::Owner => Ok(()),
        },
        Change::SetRole { .. } if actor != Role::Owner => Err(MembershipError::NotOwner),
        Change::SetRole {
            target: Role::Owner,
            ..
        } => Err(MembershipError::NotOwner),
        // The owner making someone else owner is the hand-over: they become
        // an admin (see [`handed_over`]).
        Change::SetRole { .. } => Ok(()),
    }
}

/// The role the actor keeps after giving someone the role `to`: the owner
/// who makes someone else owner becomes an admin (a group has one owner).
pub fn handed_over(to: Role) -> Option<Role> {
    (to == Role::Owner).then_some(Role::Admin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConversationKind::{Direct, Group};
    use Role::{Admin, Member, Owner};

    #[test]
    fn names_round_trip() {
        for k in [Direct, Group] {
            assert_eq!(ConversationKind::parse(k.as_str()), Some(k));
        }
        for r in [Member, Admin, Owner] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Owner"), None);
        assert_eq!(ConversationKind::parse("channel"), None);
    }

    #[test]
    fn direct_conversations_have_no_membership_changes() {
        for change in [
            Change::Add,
            Change::Remove {
                target: Member,
                leaving: true,
            },
            Change::SetRole {
                target: Member,
                to: Admin,
            },
        ] {
            assert_eq!(
                may_change(Direct, Owner, change),
                Err(MembershipError::NotAGroup)
            );
        }
    }

    #[test]
    fn admins_add_and_remove_members_and_only_the_owner_changes_roles() {
        assert_eq!(
            may_change(Group, Member, Change::Add),
            Err(MembershipError::NotAdmin)
        );
        assert_eq!(may_change(Group, Admin, Change::Add), Ok(()));
        assert_eq!(may_change(Group, Owner, Change::Add), Ok(()));
        let remove = |target| Change::Remove {
            target,
            leaving: false,
        };
        assert_eq!(
            may_change(Group, Member, remove(Member)),
            Err(MembershipError::NotAdmin)
        );
        assert_eq!(may_change(Group, Admin, remove(Member)), Ok(()));
        assert_eq!(
            may_change(Group, Admin, remove(Admin)),
            Err(MembershipError::Outranked)
        );
        assert_eq!(
            may_change(Group, Admin, remove(Owner)),
            Err(MembershipError::Outranked)
        );
        assert_eq!(may_change(Group, Owner, remove(Admin)), Ok(()));
        let set = |target, to| Change::SetRole { target, to };
        assert_eq!(
            may_change(Group, Admin, set(Member, Admin)),
            Err(MembershipError::NotOwner)
        );
        assert_eq!(may_change(Group, Owner, set(Member, Admin)), Ok(()));
        assert_eq!(may_change(Group, Owner, set(Admin, Member)), Ok(()));
        assert_eq!(
            may_change(Group, Owner, set(Member, Owner)),
            Ok(()),
            "the hand-over"
        );
        assert_eq!(handed_over(Owner), Some(Admin));
        assert_eq!(handed_over(Admin), None);
    }

    #[test]
    fn anyone_leaves_but_the_owner_hands_over_first() {
        let leave = |target| Change::Remove {
            target,
            leaving: true,
        };
        assert_eq!(may_change(Group, Member, leave(Member)), Ok(()));
        assert_eq!(may_change(Group, Admin, leave(Admin)), Ok(()));
        assert_eq!(
            may_change(Group, Owner, leave(Owner)),
            Err(MembershipError::OwnerMustHandOver)
        );
    }
}
