//! The `ControlPlane` trait implementation: the unary calls, and the streaming ones
//! handed to [`super::watch`] and [`super::snapshot`].

use std::collections::BTreeSet;
use std::time::Duration;

use constellation_proto::v1::{self as pb, command::Op, command_result::Outcome};
use pb::control_plane_server::ControlPlane;
use tonic::{Request, Response, Status, Streaming};

use super::{ControlPlaneService, snapshot, watch};
use crate::raft::Member;
use crate::state::{AllocationFilter, DEFAULT_DRAIN_DEADLINE, State, spec_hash};
use crate::validate::{self, KnownNames};
use crate::{Error, FieldViolations, Result};

type Reply<T> = std::result::Result<Response<T>, Status>;

/// How long a membership call proxied to the leader may take (a new member catches up
/// before it is promoted).
const PROXY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting to the leader's API for a proxied call may take.
const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Set on membership calls proxied to the leader, so they are never proxied twice.
const PROXIED_HEADER: &str = "x-constellation-proxied";

fn ok<T>(message: T) -> Reply<T> {
    Ok(Response::new(message))
}

/// The variant name of an outcome, for "unexpected outcome" errors.
fn outcome_name(outcome: &Option<Outcome>) -> &'static str {
    match outcome {
        None => "none",
        Some(Outcome::Error(_)) => "error",
        Some(Outcome::Service(_)) => "service",
        Some(Outcome::Node(_)) => "node",
        Some(Outcome::Lease(_)) => "lease",
        Some(Outcome::Migration(_)) => "migration",
        Some(Outcome::Secret(_)) => "secret",
        Some(Outcome::Config(_)) => "config",
        Some(Outcome::Done(_)) => "done",
    }
}

/// Takes the expected outcome variant out of a `CommandResult`.
macro_rules! outcome {
    ($result:expr, $variant:ident) => {{
        let result: &mut pb::CommandResult = &mut $result;
        match result.outcome.take() {
            Some(Outcome::$variant(value)) => Ok(value),
            other => Err(Error::Internal(format!(
                "command returned a {} outcome, expected {}",
                outcome_name(&other),
                stringify!($variant)
            ))),
        }
    }};
}

impl ControlPlaneService {
    /// Commits one op through the leader; a refused command comes back as its error.
    async fn write(&self, op: Op) -> Result<pb::CommandResult> {
        self.cluster
            .write(pb::Command {
                op: Some(op),
                ..Default::default()
            })
            .await
    }

    async fn set_availability(
        &self,
        name: String,
        availability: pb::NodeAvailability,
        drain: Option<(pbjson_types::Duration, u32)>,
    ) -> Result<pb::Node> {
        validate::single(validate::node_name, "name", &name)?;
        let (drain_deadline, drain_batch_size) = drain.unzip();
        let mut result = self
            .write(Op::SetNodeAvailability(pb::SetNodeAvailabilityCommand {
                name,
                availability: availability as i32,
                drain_deadline,
                drain_batch_size: drain_batch_size.unwrap_or(0),
            }))
            .await?;
        outcome!(result, Node)
    }

    /// Answers a membership call here when this member leads, else sends it to the
    /// leader's API and returns the leader's answer.
    async fn on_leader<Req, Resp: FromStatus>(
        &self,
        request: Request<Req>,
        here: impl AsyncFnOnce(Req) -> Result<()>,
        proxy: impl AsyncFnOnce(
            pb::control_plane_client::ControlPlaneClient<tonic::transport::Channel>,
            Request<Req>,
        ) -> Reply<Resp>,
    ) -> Reply<Resp> {
        if self.cluster.is_leader() {
            here(request.into_inner()).await?;
            let status = self.cluster.status().await?;
            return ok(Resp::from_status(status));
        }
        if request.metadata().contains_key(PROXIED_HEADER) {
            return Err(Error::Unavailable("leadership is moving; retry".into()).into());
        }
        let Some((id, leader)) = self.cluster.leader() else {
            return Err(Error::Unavailable("no leader is known; retry".into()).into());
        };
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{}", leader.api_addr))
                .map_err(|e| Error::Internal(format!("leader {id} api address: {e}")))?
                .connect_timeout(PROXY_CONNECT_TIMEOUT)
                .timeout(PROXY_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Error::Unavailable(format!("leader {id} at {}: {e}", leader.api_addr)))?;
        let client = pb::control_plane_client::ControlPlaneClient::new(channel);
        let mut forwarded = Request::new(request.into_inner());
        forwarded.metadata_mut().insert(
            PROXIED_HEADER,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        proxy(client, forwarded).await
    }
}

/// Membership responses are the cluster status after the change.
trait FromStatus {
    fn from_status(status: pb::ClusterStatusResponse) -> Self;
}

impl FromStatus for pb::AddMemberResponse {
    fn from_status(status: pb::ClusterStatusResponse) -> Self {
        Self {
            status: Some(status),
        }
    }
}

impl FromStatus for pb::RemoveMemberResponse {
    fn from_status(status: pb::ClusterStatusResponse) -> Self {
        Self {
            status: Some(status),
        }
    }
}

/// The names `spec` refers to that exist in the current state: validation asks about
/// no others, so this costs nothing per service or secret the cluster holds.
fn known_names(state: &State, spec: Option<&pb::ServiceSpec>) -> KnownNames {
    let Some(spec) = spec else {
        return KnownNames::default();
    };
    fn existing<'a>(
        names: impl Iterator<Item = &'a String>,
        exists: impl Fn(&str) -> bool,
    ) -> BTreeSet<String> {
        names.filter(|n| exists(n)).cloned().collect()
    }
    KnownNames {
        secrets: existing(spec.secrets.iter().map(|r| &r.name), |n| {
            state.secret_data(n).is_some()
        }),
        configs: existing(spec.configs.iter().map(|r| &r.name), |n| {
            state.config(n).is_some()
        }),
        services: existing(spec.depends_on.iter().map(|d| &d.service), |n| {
            state.service(n).is_some()
        }),
    }
}

/// What applying `req` would produce, without writing: the current service when the
/// spec is unchanged, else the next version.
fn dry_run(state: &State, req: &pb::ApplyServiceRequest) -> Result<pb::ApplyServiceResponse> {
    let spec = req.spec.clone().unwrap_or_default();
    let current = state.service(&spec.name);
    let version = current.map_or(0, |s| s.version);
    if let Some(expected) = req.expected_version
        && expected != version
    {
        return Err(Error::FailedPrecondition(format!(
            "service {:?} is at version {version}, not {expected}",
            spec.name
        )));
    }
    let index = state.event_index();
    if let Some(service) = current
        && service.spec.as_ref() == Some(&spec)
    {
        return Ok(pb::ApplyServiceResponse {
            service: Some(service.clone()),
            changed: false,
            index,
        });
    }
    let now = crate::cluster::now();
    let mut service = current.cloned().unwrap_or_else(|| pb::Service {
        created_at: Some(now),
        ..Default::default()
    });
    service.spec_hash = spec_hash(&spec);
    service.updated_at = Some(now);
    service.previous_spec = service.spec.replace(spec);
    service.version = version + 1;
    Ok(pb::ApplyServiceResponse {
        service: Some(service),
        changed: true,
        index,
    })
}

/// The migration a CreateMigration request asks for: the service must exist, the
/// allocation is resolved (the only live one when none is named).
fn new_migration(state: &State, req: &pb::CreateMigrationRequest) -> Result<pb::Migration> {
    if state.service(&req.service_name).is_none() {
        return Err(Error::not_found("service", &req.service_name));
    }
    let allocation = if req.allocation_id.is_empty() {
        let live = state.allocations(&AllocationFilter {
            service_name: req.service_name.clone(),
            ..Default::default()
        });
        match live.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::FailedPrecondition(format!(
                    "service {:?} has no running allocation to migrate",
                    req.service_name
                )));
            }
            many => {
                return Err(Error::invalid(
                    "allocation_id",
                    format!("required: the service has {} allocations", many.len()),
                ));
            }
        }
    } else {
        state
            .allocation(&req.allocation_id)
            .filter(|a| a.service_name == req.service_name)
            .ok_or_else(|| Error::not_found("allocation", &req.allocation_id))?
    };
    if !req.target_node.is_empty() && state.node(&req.target_node).is_none() {
        return Err(Error::not_found("node", &req.target_node));
    }
    Ok(pb::Migration {
        id: uuid::Uuid::new_v4().simple().to_string(),
        service_name: req.service_name.clone(),
        allocation_id: allocation.id.clone(),
        source_node: allocation.node_name.clone(),
        target_node: req.target_node.clone(),
        phase: pb::MigrationPhase::Pending as i32,
        priority: req.priority,
        reason: "requested by an operator".into(),
        attempt: 1,
        started_at: Some(crate::cluster::now()),
        ..Default::default()
    })
}

fn add_member_request(req: &pb::AddMemberRequest) -> Result<Member> {
    let mut v = FieldViolations::default();
    if req.id == 0 {
        v.push("id", "required: member ids start at 1");
    }
    for (field, addr) in [("raft_addr", &req.raft_addr), ("api_addr", &req.api_addr)] {
        if addr
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            v.push(field, "must be host:port");
        }
    }
    v.into_result()?;
    Ok(Member {
        raft_addr: req.raft_addr.clone(),
        api_addr: req.api_addr.clone(),
    })
}

#[tonic::async_trait]
impl ControlPlane for ControlPlaneService {
    async fn apply_service(
        &self,
        request: Request<pb::ApplyServiceRequest>,
    ) -> Reply<pb::ApplyServiceResponse> {
        let req = request.into_inner();
        // References are checked against this member's state first; only a spec that
        // fails there pays for a linearizable read, so a reference to something just
        // created elsewhere is never refused because this member lags.
        let known = |s: &State| known_names(s, req.spec.as_ref());
        let local = self.cluster.read(pb::ReadConsistency::Stale, known);
        if validate::apply_service(&req, &local.await?).is_err() {
            let consistency = pb::ReadConsistency::Linearizable;
            let known = self.cluster.read(consistency, known).await?;
            validate::apply_service(&req, &known)?;
        }
        let consistency = pb::ReadConsistency::Linearizable;
        if req.dry_run {
            return ok(self
                .cluster
                .read(consistency, |s| dry_run(s, &req))
                .await??);
        }
        let mut result = self
            .write(Op::ApplyService(pb::ApplyServiceCommand {
                spec: req.spec,
                expected_version: req.expected_version,
            }))
            .await?;
        ok(pb::ApplyServiceResponse {
            service: Some(outcome!(result, Service)?),
            changed: result.changed,
            index: result.index,
        })
    }

    async fn get_service(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> Reply<pb::GetServiceResponse> {
        let req = request.into_inner();
        validate::single(validate::name, "name", &req.name)?;
        let found = self
            .cluster
            .read(req.consistency(), |s| {
                let service = s.service(&req.name)?.clone();
                let allocations = s.allocations_of_service(&req.name).cloned().collect();
                Some(pb::GetServiceResponse {
                    service: Some(service),
                    allocations,
                })
            })
            .await?;
        ok(found.ok_or_else(|| Error::not_found("service", &req.name))?)
    }

    async fn list_services(
        &self,
        request: Request<pb::ListServicesRequest>,
    ) -> Reply<pb::ListServicesResponse> {
        let req = request.into_inner();
        ok(self
            .cluster
            .read(req.consistency(), |s| pb::ListServicesResponse {
                services: s.services().cloned().collect(),
                index: s.event_index(),
            })
            .await?)
    }

    async fn delete_service(
        &self,
        request: Request<pb::DeleteServiceRequest>,
    ) -> Reply<pb::DeleteServiceResponse> {
        let req = request.into_inner();
        validate::single(validate::name, "name", &req.name)?;
        let result = self
            .write(Op::DeleteService(pb::DeleteServiceCommand {
                name: req.name,
            }))
            .await?;
        ok(pb::DeleteServiceResponse {
            index: result.index,
        })
    }

    async fn rollback_service(
        &self,
        request: Request<pb::RollbackServiceRequest>,
    ) -> Reply<pb::RollbackServiceResponse> {
        let req = request.into_inner();
        validate::single(validate::name, "name", &req.name)?;
        let mut result = self
            .write(Op::RollbackService(pb::RollbackServiceCommand {
                name: req.name,
            }))
            .await?;
        ok(pb::RollbackServiceResponse {
            service: Some(outcome!(result, Service)?),
            index: result.index,
        })
    }

    async fn list_nodes(
        &self,
        request: Request<pb::ListNodesRequest>,
    ) -> Reply<pb::ListNodesResponse> {
        let req = request.into_inner();
        ok(self
            .cluster
            .read(req.consistency(), |s| pb::ListNodesResponse {
                nodes: s.nodes().cloned().collect(),
                index: s.event_index(),
            })
            .await?)
    }

    async fn get_node(&self, request: Request<pb::GetNodeRequest>) -> Reply<pb::GetNodeResponse> {
        let req = request.into_inner();
        validate::single(validate::node_name, "name", &req.name)?;
        let found = self
            .cluster
            .read(req.consistency(), |s| {
                let node = s.node(&req.name)?.clone();
                let allocations = s.allocations_of_node(&node.id).cloned().collect();
                Some(pb::GetNodeResponse {
                    node: Some(node),
                    allocations,
                })
            })
            .await?;
        ok(found.ok_or_else(|| Error::not_found("node", &req.name))?)
    }

    async fn cordon_node(
        &self,
        request: Request<pb::CordonNodeRequest>,
    ) -> Reply<pb::CordonNodeResponse> {
        let name = request.into_inner().name;
        let node = self
            .set_availability(name, pb::NodeAvailability::Cordoned, None)
            .await?;
        ok(pb::CordonNodeResponse { node: Some(node) })
    }

    async fn uncordon_node(
        &self,
        request: Request<pb::UncordonNodeRequest>,
    ) -> Reply<pb::UncordonNodeResponse> {
        let name = request.into_inner().name;
        let node = self
            .set_availability(name, pb::NodeAvailability::Active, None)
            .await?;
        ok(pb::UncordonNodeResponse { node: Some(node) })
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Reply<pb::DrainNodeResponse> {
        let req = request.into_inner();
        validate::drain_node(&req)?;
        let deadline = req.deadline.unwrap_or(DEFAULT_DRAIN_DEADLINE);
        let batch = req.batch_size.max(1);
        let node = self
            .set_availability(
                req.name,
                pb::NodeAvailability::Draining,
                Some((deadline, batch)),
            )
            .await?;
        ok(pb::DrainNodeResponse { node: Some(node) })
    }

    async fn list_allocations(
        &self,
        request: Request<pb::ListAllocationsRequest>,
    ) -> Reply<pb::ListAllocationsResponse> {
        let req = request.into_inner();
        validate::list_allocations(&req)?;
        let filter = AllocationFilter {
            service_name: req.service_name.clone(),
            node_name: req.node_name.clone(),
            include_terminal: req.include_terminal,
        };
        ok(self
            .cluster
            .read(req.consistency(), |s| pb::ListAllocationsResponse {
                allocations: s.allocations(&filter).into_iter().cloned().collect(),
                index: s.event_index(),
            })
            .await?)
    }

    /// Records a PENDING migration. Executing migrations (the phases after PENDING) is
    /// a later piece of work: nothing acts on the record yet.
    async fn create_migration(
        &self,
        request: Request<pb::CreateMigrationRequest>,
    ) -> Reply<pb::CreateMigrationResponse> {
        let req = request.into_inner();
        validate::create_migration(&req)?;
        let consistency = pb::ReadConsistency::Linearizable;
        let migration = self
            .cluster
            .read(consistency, |s| new_migration(s, &req))
            .await??;
        let mut result = self
            .write(Op::PutMigration(pb::PutMigrationCommand {
                migration: Some(migration),
            }))
            .await?;
        ok(pb::CreateMigrationResponse {
            migration: Some(outcome!(result, Migration)?),
        })
    }

    async fn get_migration(
        &self,
        request: Request<pb::GetMigrationRequest>,
    ) -> Reply<pb::GetMigrationResponse> {
        let req = request.into_inner();
        if req.id.is_empty() {
            return Err(Error::invalid("id", "required").into());
        }
        let found = self
            .cluster
            .read(req.consistency(), |s| s.migration(&req.id).cloned())
            .await?;
        let migration = found.ok_or_else(|| Error::not_found("migration", &req.id))?;
        ok(pb::GetMigrationResponse {
            migration: Some(migration),
        })
    }

    async fn list_migrations(
        &self,
        request: Request<pb::ListMigrationsRequest>,
    ) -> Reply<pb::ListMigrationsResponse> {
        let req = request.into_inner();
        let service = Some(req.service_name.as_str()).filter(|s| !s.is_empty());
        ok(self
            .cluster
            .read(req.consistency(), |s| pb::ListMigrationsResponse {
                migrations: s.migrations(service).into_iter().cloned().collect(),
                index: s.event_index(),
            })
            .await?)
    }

    async fn acquire_lease(
        &self,
        request: Request<pb::AcquireLeaseRequest>,
    ) -> Reply<pb::AcquireLeaseResponse> {
        let req = request.into_inner();
        validate::acquire_lease(&req)?;
        let mut result = self
            .write(Op::AcquireLease(pb::AcquireLeaseCommand {
                name: req.name,
                holder: req.holder,
                ttl: req.ttl,
            }))
            .await?;
        ok(pb::AcquireLeaseResponse {
            lease: Some(outcome!(result, Lease)?),
            acquired: result.acquired,
        })
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> Reply<pb::RenewLeaseResponse> {
        let req = request.into_inner();
        validate::renew_lease(&req)?;
        let mut result = self
            .write(Op::RenewLease(pb::RenewLeaseCommand {
                name: req.name,
                holder: req.holder,
                fencing_token: req.fencing_token,
                ttl: req.ttl,
            }))
            .await?;
        ok(pb::RenewLeaseResponse {
            lease: Some(outcome!(result, Lease)?),
        })
    }

    async fn release_lease(
        &self,
        request: Request<pb::ReleaseLeaseRequest>,
    ) -> Reply<pb::ReleaseLeaseResponse> {
        let req = request.into_inner();
        validate::release_lease(&req)?;
        self.write(Op::ReleaseLease(pb::ReleaseLeaseCommand {
            name: req.name,
            holder: req.holder,
            fencing_token: req.fencing_token,
        }))
        .await?;
        ok(pb::ReleaseLeaseResponse {})
    }

    async fn list_leases(
        &self,
        request: Request<pb::ListLeasesRequest>,
    ) -> Reply<pb::ListLeasesResponse> {
        let req = request.into_inner();
        ok(self
            .cluster
            .read(req.consistency(), |s| pb::ListLeasesResponse {
                leases: s.leases().cloned().collect(),
                index: s.event_index(),
            })
            .await?)
    }

    async fn put_secret(
        &self,
        request: Request<pb::PutSecretRequest>,
    ) -> Reply<pb::PutSecretResponse> {
        let req = request.into_inner();
        validate::put_secret(&req)?;
        let mut result = self
            .write(Op::PutSecret(pb::PutSecretCommand { secret: req.secret }))
            .await?;
        ok(pb::PutSecretResponse {
            secret: Some(outcome!(result, Secret)?),
        })
    }

    async fn delete_secret(
        &self,
        request: Request<pb::DeleteSecretRequest>,
    ) -> Reply<pb::DeleteSecretResponse> {
        let req = request.into_inner();
        validate::single(validate::object_name, "name", &req.name)?;
        self.write(Op::DeleteSecret(pb::DeleteSecretCommand { name: req.name }))
            .await?;
        ok(pb::DeleteSecretResponse {})
    }

    async fn list_secrets(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> Reply<pb::ListSecretsResponse> {
        let req = request.into_inner();
        let secrets = self
            .cluster
            .read(req.consistency(), State::secret_metas)
            .await?;
        ok(pb::ListSecretsResponse { secrets })
    }

    async fn put_config(
        &self,
        request: Request<pb::PutConfigRequest>,
    ) -> Reply<pb::PutConfigResponse> {
        let req = request.into_inner();
        validate::put_config(&req)?;
        let mut result = self
            .write(Op::PutConfig(pb::PutConfigCommand { config: req.config }))
            .await?;
        ok(pb::PutConfigResponse {
            config: Some(outcome!(result, Config)?),
        })
    }

    async fn delete_config(
        &self,
        request: Request<pb::DeleteConfigRequest>,
    ) -> Reply<pb::DeleteConfigResponse> {
        let req = request.into_inner();
        validate::single(validate::object_name, "name", &req.name)?;
        self.write(Op::DeleteConfig(pb::DeleteConfigCommand { name: req.name }))
            .await?;
        ok(pb::DeleteConfigResponse {})
    }

    async fn list_configs(
        &self,
        request: Request<pb::ListConfigsRequest>,
    ) -> Reply<pb::ListConfigsResponse> {
        let req = request.into_inner();
        let configs = self
            .cluster
            .read(req.consistency(), |s| s.configs().cloned().collect())
            .await?;
        ok(pb::ListConfigsResponse { configs })
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Reply<pb::ClusterStatusResponse> {
        ok(self.cluster.status().await?)
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Reply<pb::AddMemberResponse> {
        let member = add_member_request(request.get_ref())?;
        let cluster = &self.cluster;
        self.on_leader(
            request,
            async |req: pb::AddMemberRequest| {
                cluster.add_member(req.id, member, req.learner_only).await
            },
            async |mut client, req| client.add_member(req).await,
        )
        .await
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Reply<pb::RemoveMemberResponse> {
        if request.get_ref().id == 0 {
            return Err(Error::invalid("id", "required: member ids start at 1").into());
        }
        let cluster = &self.cluster;
        self.on_leader(
            request,
            async |req: pb::RemoveMemberRequest| cluster.remove_member(req.id).await,
            async |mut client, req| client.remove_member(req).await,
        )
        .await
    }

    type SaveSnapshotStream = snapshot::ChunkStream;

    async fn save_snapshot(
        &self,
        _request: Request<pb::SaveSnapshotRequest>,
    ) -> Reply<Self::SaveSnapshotStream> {
        ok(snapshot::save(&self.cluster).await?)
    }

    async fn restore_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Reply<pb::RestoreSnapshotResponse> {
        let index = snapshot::restore(&self.cluster, request.into_inner()).await?;
        ok(pb::RestoreSnapshotResponse { index })
    }

    type WatchStream = watch::WatchStream;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Reply<Self::WatchStream> {
        ok(watch::watch(self.cluster.clone(), request.into_inner())?)
    }
}
