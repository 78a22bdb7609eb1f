//! Who may do what through the admin API, decided from a verified caller.
//!
//! Authorization is on when the cluster has mutual TLS or a token: then a
//! caller needs a credential for everything, the admin role for every
//! operation that changes the cluster, and a member's own certificate to
//! speak as a member. Without either, the API is open, for a trusted
//! network: the switch is the configuration, as with Patroni and etcd.

/// What the caller proved, in order of what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// No credential (or none that counts).
    Anonymous,
    /// A read token, or a CA-signed certificate with no other role.
    Read,
    /// A certificate naming a member: peer calls and reads, and operator
    /// requests another member forwards (it authorized the operator).
    Member,
    /// The admin token, or a certificate named in `auth.admin_names`.
    Admin,
}

/// A verified caller: its role and how to name it in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// E.g. "certificate operator", "admin token", "member node2".
    pub identity: String,
}

/// What a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// status, history, probe.
    Read,
    /// switchover, failover, rebuild, restart, pause/resume, config set,
    /// membership changes: asked by an operator.
    Operate,
    /// The same, forwarded by a member to the Raft leader (with the
    /// operator's token, if it gave one).
    ForwardedOperate,
}

/// Allowed, or the one-line refusal the caller sees.
pub fn allows(active: bool, caller: &Caller, access: Access) -> Result<(), String> {
    if !active {
        return Ok(());
    }
    match (access, &caller.role) {
        (_, Role::Anonymous) => Err("no credential: this cluster requires a client certificate (--ca-file, --cert-file, --key-file) or a token (--token-file)".to_string()),
        (Access::Read, _) | (Access::Operate, Role::Admin) | (Access::ForwardedOperate, Role::Member | Role::Admin) => {
            Ok(())
        }
        (Access::Operate, Role::Read | Role::Member) => Err(format!(
            "{} may read but not change the cluster: use the admin token (--token-file) or a certificate named in auth.admin_names",
            caller.identity
        )),
        (Access::ForwardedOperate, Role::Read) => {
            Err(format!("{} is not a member: only members forward operator requests", caller.identity))
        }
    }
}

/// Whether refusing `caller` the `access` it asked for goes into the
/// history as an audit entry: an operator's request by someone who proved
/// who they are. An anonymous caller's refusal is only logged (without a
/// credential anyone could flood the history); a forged forwarding is no
/// operator's request.
pub fn refusal_audited(caller: &Caller, access: Access) -> bool {
    access == Access::Operate && caller.role != Role::Anonymous
}

/// Compares a presented token with the configured one in time that does
/// not depend on where they differ.
pub fn token_matches(presented: &str, configured: &str) -> bool {
    let (a, b) = (presented.as_bytes(), configured.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0 && !b.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller { role, identity: "certificate x".into() }
    }

    #[test]
    fn roles_against_access() {
        use Access::*;
        //            Read   Operate ForwardedOperate
        let table = [
            (Role::Anonymous, [false, false, false]),
            (Role::Read, [true, false, false]),
            (Role::Member, [true, false, true]),
            (Role::Admin, [true, true, true]),
        ];
        for (role, expected) in table {
            for (access, ok) in [Read, Operate, ForwardedOperate].into_iter().zip(expected) {
                assert_eq!(allows(true, &caller(role.clone()), access).is_ok(), ok, "{role:?} {access:?}");
                assert!(allows(false, &caller(role.clone()), access).is_ok(), "auth off allows everything");
            }
        }
        let e = allows(true, &caller(Role::Read), Operate).unwrap_err();
        assert!(e.starts_with("certificate x may read but not change the cluster"), "{e}");
        assert!(allows(true, &caller(Role::Anonymous), Read).unwrap_err().starts_with("no credential"));
    }

    #[test]
    fn which_refusals_are_audited() {
        assert!(refusal_audited(&caller(Role::Read), Access::Operate));
        assert!(refusal_audited(&caller(Role::Member), Access::Operate));
        assert!(!refusal_audited(&caller(Role::Anonymous), Access::Operate));
        assert!(!refusal_audited(&caller(Role::Read), Access::ForwardedOperate));
        assert!(!refusal_audited(&caller(Role::Anonymous), Access::Read));
    }

    #[test]
    fn tokens() {
        assert!(token_matches("s3cret", "s3cret"));
        for bad in ["", "s3cre", "s3cret!", "S3cret", "x"] {
            assert!(!token_matches(bad, "s3cret"), "{bad:?}");
        }
        assert!(!token_matches("", ""), "an empty configured token matches nothing");
    }
}
