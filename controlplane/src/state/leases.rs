//! Leases with fencing tokens. A token is issued only when a lease is acquired while
//! free, as the highest token ever issued for the name + 1, and that high-water mark
//! (`lease_tokens`) survives release and expiry, so tokens never repeat. The state
//! never expires a lease by comparing times: the leader proposes `ExpireLease` when
//! its own clock says the TTL passed.

use constellation_proto::v1::{
    AcquireLeaseCommand, ChangeKind, CommandError, ExpireLeaseCommand, Lease, LeaseEvent,
    ReleaseLeaseCommand, RenewLeaseCommand, command_result::Outcome, event::Payload,
};
use pbjson_types::{Duration, Timestamp};

use super::{OpResult, State, done, failed_precondition, invalid, not_found, outcome, time};

impl State {
    pub(super) fn acquire_lease(&mut self, cmd: &AcquireLeaseCommand, now: Timestamp) -> OpResult {
        check_name_holder(&cmd.name, &cmd.holder)?;
        let ttl = required_ttl(cmd.ttl.as_ref())?;
        let (lease, kind) = match self.leases.get(&cmd.name) {
            Some(current) if current.holder != cmd.holder => {
                return Ok(outcome(Outcome::Lease(current.clone())));
            }
            Some(current) => (renewed(current, ttl, now), ChangeKind::Updated),
            None => (self.issue(cmd, ttl, now), ChangeKind::Created),
        };
        self.put_lease(lease.clone(), kind, now);
        let mut result = outcome(Outcome::Lease(lease));
        result.acquired = true;
        Ok(result)
    }

    /// A fresh lease for `cmd.holder` with the next fencing token (recorded).
    fn issue(&mut self, cmd: &AcquireLeaseCommand, ttl: Duration, now: Timestamp) -> Lease {
        let token = self.lease_tokens.entry(cmd.name.clone()).or_default();
        *token = token.saturating_add(1);
        Lease {
            name: cmd.name.clone(),
            holder: cmd.holder.clone(),
            fencing_token: *token,
            ttl: Some(ttl),
            acquired_at: Some(now),
            expires_at: Some(time::add(now, &ttl)),
        }
    }

    pub(super) fn renew_lease(&mut self, cmd: &RenewLeaseCommand, now: Timestamp) -> OpResult {
        let current = self.held(&cmd.name, &cmd.holder, cmd.fencing_token)?;
        let ttl = match &cmd.ttl {
            Some(ttl) => required_ttl(Some(ttl))?,
            None => current.ttl.unwrap_or_default(),
        };
        let lease = renewed(current, ttl, now);
        self.put_lease(lease.clone(), ChangeKind::Updated, now);
        Ok(outcome(Outcome::Lease(lease)))
    }

    pub(super) fn release_lease(&mut self, cmd: &ReleaseLeaseCommand, now: Timestamp) -> OpResult {
        self.held(&cmd.name, &cmd.holder, cmd.fencing_token)?;
        self.drop_lease(&cmd.name, now);
        Ok(done())
    }

    /// Applies only while the lease still carries `fencing_token`; otherwise a no-op.
    pub(super) fn expire_lease(&mut self, cmd: &ExpireLeaseCommand, now: Timestamp) -> OpResult {
        let current = self.leases.get(&cmd.name);
        if current.is_some_and(|l| l.fencing_token == cmd.fencing_token) {
            self.drop_lease(&cmd.name, now);
        }
        Ok(done())
    }

    /// The lease, if `holder` holds it under `token`.
    fn held(&self, name: &str, holder: &str, token: u64) -> Result<&Lease, CommandError> {
        let lease = self
            .leases
            .get(name)
            .ok_or_else(|| not_found("lease", name))?;
        if lease.holder != holder {
            return Err(failed_precondition(format!(
                "lease {name:?} is not held by {holder:?}"
            )));
        }
        if lease.fencing_token != token {
            return Err(failed_precondition(format!(
                "stale fencing token {token} for lease {name:?}"
            )));
        }
        Ok(lease)
    }

    fn put_lease(&mut self, lease: Lease, kind: ChangeKind, now: Timestamp) {
        if self.leases.get(&lease.name) == Some(&lease) {
            return;
        }
        self.leases.insert(lease.name.clone(), lease.clone());
        self.emit_lease(now, kind, lease);
    }

    fn drop_lease(&mut self, name: &str, now: Timestamp) {
        if let Some(lease) = self.leases.remove(name) {
            self.emit_lease(now, ChangeKind::Deleted, lease);
        }
    }

    fn emit_lease(&mut self, now: Timestamp, kind: ChangeKind, lease: Lease) {
        let event = LeaseEvent {
            kind: kind as i32,
            lease: Some(lease),
        };
        self.emit(now, Payload::Lease(event));
    }
}

/// The lease renewed at `now` for `ttl`: same holder and token.
fn renewed(current: &Lease, ttl: Duration, now: Timestamp) -> Lease {
    Lease {
        ttl: Some(ttl),
        expires_at: Some(time::add(now, &ttl)),
        ..current.clone()
    }
}

fn check_name_holder(name: &str, holder: &str) -> Result<(), CommandError> {
    if name.is_empty() {
        return Err(invalid("name", "empty"));
    }
    if holder.is_empty() {
        return Err(invalid("holder", "empty"));
    }
    Ok(())
}

fn required_ttl(ttl: Option<&Duration>) -> Result<Duration, CommandError> {
    match ttl {
        Some(ttl) if time::is_positive(ttl) => Ok(*ttl),
        Some(_) => Err(invalid("ttl", "must be positive")),
        None => Err(invalid("ttl", "missing")),
    }
}
