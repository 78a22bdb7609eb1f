//! Who is calling: the verified identity behind an admin API request (a
//! bearer token, or the CA-verified client certificate), for the decision
//! in `haraft_core::auth` and for the history.

use crate::shared::Shared;
use haraft_core::auth::{Access, Caller, Role, allows, token_matches};
use haraft_raft::tls::certificate_names;
use tonic::{Request, Status};

/// The metadata key of a bearer token (`authorization: Bearer TOKEN`).
pub const AUTHORIZATION: &str = "authorization";

/// Authorization is on when the cluster has TLS or a token.
pub fn active(shared: &Shared) -> bool {
    let auth = &shared.config.auth;
    shared.config.tls.is_some() || auth.admin_token.is_some() || auth.read_token.is_some()
}

/// The caller of `request`, or a refusal for a token that matches none.
pub fn caller<T>(shared: &Shared, request: &Request<T>) -> Result<Caller, Status> {
    let auth = &shared.config.auth;
    if let Some(value) = request.metadata().get(AUTHORIZATION) {
        let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        if auth.admin_token.as_ref().is_some_and(|t| token_matches(token, &t.0)) {
            return Ok(Caller { role: Role::Admin, identity: "the admin token".into() });
        }
        if auth.read_token.as_ref().is_some_and(|t| token_matches(token, &t.0)) {
            return Ok(Caller { role: Role::Read, identity: "the read token".into() });
        }
        // Never echo the token itself.
        return Err(Status::unauthenticated(
            "the token given matches no token of this cluster: check --token-file (auth.admin_token_file or auth.read_token_file on the agents)",
        ));
    }
    let certs = request.peer_certs();
    if let Some(chain) = certs.as_ref() {
        for m in shared.members() {
            if certificate_names(Some(chain), &m.name) {
                return Ok(Caller { role: Role::Member, identity: format!("member {}", m.name) });
            }
        }
        for name in &auth.admin_names {
            if certificate_names(Some(chain), name) {
                return Ok(Caller { role: Role::Admin, identity: format!("certificate {name}") });
            }
        }
        return Ok(Caller { role: Role::Read, identity: "a certificate without the admin role".into() });
    }
    Ok(Caller { role: Role::Anonymous, identity: "an anonymous caller".into() })
}

/// The caller, if it may have `access`; a `permission_denied` (or
/// `unauthenticated`) status saying what to do otherwise.
pub fn require<T>(shared: &Shared, request: &Request<T>, access: Access) -> Result<Caller, Status> {
    let caller = caller(shared, request)?;
    check(shared, &caller, access).map(|()| caller)
}

/// Whether `caller` may have `access`: `unauthenticated` for a caller
/// without credentials, `permission_denied` for one without the role.
pub fn check(shared: &Shared, caller: &Caller, access: Access) -> Result<(), Status> {
    match allows(active(shared), caller, access) {
        Ok(()) => Ok(()),
        Err(why) if caller.role == Role::Anonymous => Err(Status::unauthenticated(why)),
        Err(why) => {
            tracing::warn!(caller = %caller.identity, ?access, "refused: {why}");
            Err(Status::permission_denied(why))
        }
    }
}
