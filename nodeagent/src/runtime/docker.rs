//! [`ContainerRuntime`] on the local Docker engine through bollard.

use super::spec::{container_config, container_name, extra_networks, protocol_from_name};
use super::{
    ContainerId, ContainerRuntime, ContainerStatus, FileMount, LABEL_ALLOCATION, LABEL_FALLBACK,
    LABEL_MANAGED, LABEL_NODE, LABEL_SERVICE, LABEL_SLOT, LABEL_SPEC_HASH, Observed,
    OwnedContainer, Prepared, Result, RuntimeError, RuntimeEvent, RuntimeEventKind,
};
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerStateStatusEnum, EventMessage, HealthStatusEnum, Ipam, IpamConfig,
    NetworkConnectRequest, NetworkCreateRequest, VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    EventsOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use constellation_proto::v1::{
    Assignment, Endpoint, FileData, FileReference, HealthState, NetworkSpec, PullPolicy,
    ServiceSpec, volume_mount,
};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bound on one pull or build when the spec sets none.
const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// Subdirectory of an allocation's file directory holding its configs.
const CONFIGS_SUBDIR: &str = ".configs";
/// Bound on the containers remembered as OOM-killed (see [`OomSeen`]).
const OOM_SEEN_MAX: usize = 4096;

/// Containers Docker sent an `oom` event for since their last start.
///
/// Docker 20.10 sets `State.OOMKilled` only if containerd's OOM event reached it
/// before the exit event; when they arrive the other way round the flag stays false
/// for good, though Docker still emits its `oom` event. Inspect ORs this set in, so
/// an OOM kill is reported whichever order the engine saw.
#[derive(Clone, Default)]
struct OomSeen(Arc<Mutex<HashSet<String>>>);

impl OomSeen {
    fn record(&self, event: &RuntimeEvent) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match event.kind {
            RuntimeEventKind::Oom if seen.len() < OOM_SEEN_MAX => {
                seen.insert(event.container_id.0.clone());
            }
            RuntimeEventKind::Start | RuntimeEventKind::Destroy => {
                seen.remove(&event.container_id.0);
            }
            _ => {}
        }
    }

    fn contains(&self, container_id: &str) -> bool {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.contains(container_id)
    }
}

/// The runtime on a Docker engine. Cheap to clone.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// The node this runtime runs containers for; it owns only containers labelled
    /// with it, so several agents (tests, or hosts sharing an engine) never touch each
    /// other's containers.
    node: String,
    secrets_dir: PathBuf,
    oom_seen: OomSeen,
}

pub(super) fn is_status(e: &RuntimeError, code: u16) -> bool {
    matches!(e, RuntimeError::Docker(d) if docker_status(d) == Some(code))
}

fn docker_status(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn docker_message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// Adds ":latest" to a reference without tag or digest, so a pull fetches one tag.
fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

fn timestamp(s: Option<&str>) -> Option<pbjson_types::Timestamp> {
    let t = humantime::parse_rfc3339_weak(s?).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    if d.is_zero() {
        return None;
    }
    Some(pbjson_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).ok()?,
        nanos: i32::try_from(d.subsec_nanos()).ok()?,
    })
}

fn health_from(s: Option<HealthStatusEnum>) -> HealthState {
    match s {
        Some(HealthStatusEnum::STARTING) => HealthState::Starting,
        Some(HealthStatusEnum::HEALTHY) => HealthState::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => HealthState::Unhealthy,
        _ => HealthState::None,
    }
}

fn health_from_str(s: &str) -> HealthState {
    match s.trim() {
        "starting" => HealthState::Starting,
        "healthy" => HealthState::Healthy,
        "unhealthy" => HealthState::Unhealthy,
        _ => HealthState::Unspecified,
    }
}

/// A single path component: no separators, not "." or "..", not empty.
fn plain_file_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

fn event_of(msg: EventMessage) -> Option<RuntimeEvent> {
    let action = msg.action?;
    let actor = msg.actor?;
    let id = actor.id?;
    let attrs = actor.attributes.unwrap_or_default();
    let kind = match action.as_str() {
        "start" => RuntimeEventKind::Start,
        "die" => RuntimeEventKind::Die {
            exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
        },
        "oom" => RuntimeEventKind::Oom,
        "destroy" => RuntimeEventKind::Destroy,
        a => match a.strip_prefix("health_status:") {
            Some(h) => RuntimeEventKind::Health(health_from_str(h)),
            None => return None,
        },
    };
    Some(RuntimeEvent {
        container_id: ContainerId(id),
        allocation_id: attrs.get(LABEL_ALLOCATION).cloned().unwrap_or_default(),
        kind,
    })
}

impl DockerRuntime {
    /// `docker` should come from [`crate::docker::connect`] (API version negotiated).
    /// Secret and config files go under `secrets_dir/<allocation id>/`. `node` is the
    /// agent's node name (see the `node` field).
    pub fn new(docker: Docker, node: impl Into<String>, secrets_dir: PathBuf) -> Self {
        Self {
            docker,
            node: node.into(),
            secrets_dir,
            oom_seen: OomSeen::default(),
        }
    }

    /// Docker label filters selecting the containers this runtime owns.
    fn owned_filter(&self) -> Vec<String> {
        vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_NODE}={}", self.node),
        ]
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The directory holding an allocation's secret and config files.
    pub fn files_dir(&self, allocation_id: &str) -> PathBuf {
        self.secrets_dir.join(allocation_id)
    }

    /// Creates a network from the spec unless one of that name exists.
    pub async fn ensure_network(&self, n: &NetworkSpec) -> Result<()> {
        match self.docker.inspect_network(&n.name, None).await {
            Ok(_) => return Ok(()),
            Err(e) if docker_status(&e) == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
        let mut labels: HashMap<String, String> = n
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert(LABEL_MANAGED.into(), "true".into());
        let ipam = (!n.subnet.is_empty() || !n.gateway.is_empty()).then(|| Ipam {
            config: Some(vec![IpamConfig {
                subnet: (!n.subnet.is_empty()).then(|| n.subnet.clone()),
                gateway: (!n.gateway.is_empty()).then(|| n.gateway.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let req = NetworkCreateRequest {
            name: n.name.clone(),
            driver: Some(if n.driver.is_empty() {
                "bridge".into()
            } else {
                n.driver.clone()
            }),
            internal: Some(n.internal),
            attachable: Some(n.attachable),
            enable_ipv6: Some(n.enable_ipv6),
            ipam,
            options: (!n.driver_options.is_empty()).then(|| {
                n.driver_options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            labels: Some(labels),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => {
                tracing::info!(network = %n.name, "created network");
                Ok(())
            }
            // Created concurrently by someone else: present, which is all we need.
            Err(e) if docker_status(&e) == Some(409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a named volume unless one of that name exists.
    pub async fn ensure_volume(
        &self,
        name: &str,
        driver: &str,
        driver_options: &HashMap<String, String>,
    ) -> Result<()> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => return Ok(()),
            Err(e) if docker_status(&e) == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
        let req = VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: (!driver.is_empty()).then(|| driver.to_string()),
            driver_opts: (!driver_options.is_empty()).then(|| driver_options.clone()),
            labels: Some(HashMap::from([(LABEL_MANAGED.into(), "true".into())])),
            ..Default::default()
        };
        self.docker.create_volume(req).await?;
        tracing::info!(volume = %name, "created volume");
        Ok(())
    }

    async fn image_present(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if docker_status(&e) == Some(404) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Pulls `image`, bounded by `timeout`; the error is Docker's message.
    async fn pull(&self, image: &str, timeout: Duration) -> std::result::Result<(), String> {
        let reference = with_default_tag(image);
        let opts = CreateImageOptionsBuilder::new()
            .from_image(&reference)
            .build();
        let pull = self
            .docker
            .create_image(Some(opts), None, None)
            .map_err(|e| docker_message(&e))
            .try_for_each(|_| async { Ok(()) });
        match tokio::time::timeout(timeout, pull).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
        }
    }

    /// Builds the image from the spec's build context with the classic builder.
    async fn build(&self, spec: &ServiceSpec, tag: &str, timeout: Duration) -> Result<()> {
        let Some(b) = &spec.build else {
            return Ok(());
        };
        let fail = |reason: String| RuntimeError::BuildFailed {
            image: tag.to_string(),
            reason,
        };
        let context = PathBuf::from(&b.context);
        let tarball = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut t = tar::Builder::new(Vec::new());
            t.follow_symlinks(false);
            t.append_dir_all(".", &context)?;
            t.into_inner()
        })
        .await
        .map_err(|e| fail(format!("tarring the context: {e}")))?
        .map_err(|e| fail(format!("tarring the context {:?}: {e}", b.context)))?;
        let dockerfile = if b.dockerfile.is_empty() {
            "Dockerfile"
        } else {
            &b.dockerfile
        };
        let mut opts = BuildImageOptionsBuilder::new()
            .dockerfile(dockerfile)
            .t(tag)
            .rm(true)
            .forcerm(true)
            .buildargs(&b.args.clone().into_iter().collect::<HashMap<_, _>>());
        if !b.target.is_empty() {
            opts = opts.target(&b.target);
        }
        let build = async {
            let mut s = self.docker.build_image(
                opts.build(),
                None,
                Some(bollard::body_full(bytes::Bytes::from(tarball))),
            );
            while let Some(item) = s.next().await {
                let info = item.map_err(|e| fail(docker_message(&e)))?;
                if let Some(d) = info.error_detail {
                    return Err(fail(d.message.unwrap_or_else(|| "unknown error".into())));
                }
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, build).await {
            Ok(r) => r,
            Err(_) => Err(fail(format!("timed out after {}s", timeout.as_secs()))),
        }
    }

    /// Makes the image present according to the pull policy, or builds it.
    async fn ensure_image(&self, a: &Assignment, spec: &ServiceSpec) -> Result<String> {
        let timeout = spec
            .pull_timeout
            .as_ref()
            .and_then(|d| u64::try_from(super::duration_ns(d)).ok())
            .filter(|&n| n > 0)
            .map(Duration::from_nanos)
            .unwrap_or(DEFAULT_PULL_TIMEOUT);
        let policy = PullPolicy::try_from(spec.pull_policy).unwrap_or(PullPolicy::Unspecified);

        if spec.build.is_some() {
            let tag = if spec.image.is_empty() {
                let hash: String = a.spec_hash.chars().take(12).collect();
                format!("constellation-build/{}:{}", spec.name, hash)
            } else {
                spec.image.clone()
            };
            if policy == PullPolicy::Always || !self.image_present(&tag).await? {
                self.build(spec, &tag, timeout).await?;
            }
            return Ok(tag);
        }

        let image = spec.image.clone();
        if image.is_empty() {
            return Err(RuntimeError::InvalidSpec("the spec names no image".into()));
        }
        match policy {
            PullPolicy::Always => {
                self.pull(&image, timeout)
                    .await
                    .map_err(|reason| RuntimeError::PullFailed {
                        image: image.clone(),
                        reason,
                    })?;
            }
            PullPolicy::Never => {
                if !self.image_present(&image).await? {
                    return Err(RuntimeError::ImageNotPresent { image });
                }
            }
            PullPolicy::IfNotPresent | PullPolicy::Unspecified => {
                if !self.image_present(&image).await? {
                    tracing::info!(image = %image, "pulling image");
                    self.pull(&image, timeout).await.map_err(|reason| {
                        RuntimeError::ImageUnavailable {
                            image: image.clone(),
                            reason,
                        }
                    })?;
                }
            }
        }
        Ok(image)
    }

    /// Writes the referenced secrets and configs under the allocation's directory.
    async fn write_files(&self, a: &Assignment, spec: &ServiceSpec) -> Result<Vec<FileMount>> {
        if spec.secrets.is_empty() && spec.configs.is_empty() {
            return Ok(Vec::new());
        }
        let alloc_id = a
            .allocation
            .as_ref()
            .map(|x| x.id.clone())
            .unwrap_or_default();
        if !plain_file_name(&alloc_id) {
            return Err(RuntimeError::InvalidSpec(format!(
                "bad allocation id {alloc_id:?}"
            )));
        }
        let dir = self.files_dir(&alloc_id);
        let mut plan: Vec<(PathBuf, String, u32, Vec<u8>)> = Vec::new();
        let find = |list: &[FileData], r: &FileReference, what: &str| {
            list.iter()
                .find(|f| f.name == r.name)
                .map(|f| f.data.clone())
                .ok_or_else(|| {
                    RuntimeError::InvalidSpec(format!(
                        "{what} {:?} is referenced but its data is missing",
                        r.name
                    ))
                })
        };
        for r in &spec.secrets {
            let target = if r.target.is_empty() {
                &r.name
            } else {
                &r.target
            };
            if !plain_file_name(target) || target == CONFIGS_SUBDIR {
                return Err(RuntimeError::InvalidSpec(format!(
                    "secret target {target:?} must be a plain file name"
                )));
            }
            let mode = if r.mode == 0 { 0o400 } else { r.mode };
            plan.push((
                dir.join(target),
                format!("/run/secrets/{target}"),
                mode,
                find(&a.secrets, r, "secret")?,
            ));
        }
        for r in &spec.configs {
            let target = if r.target.is_empty() {
                format!("/{}", r.name)
            } else {
                r.target.clone()
            };
            if !target.starts_with('/') || target.split('/').any(|c| c == "..") {
                return Err(RuntimeError::InvalidSpec(format!(
                    "config target {target:?} must be an absolute path"
                )));
            }
            // Flatten the target path into one file name: "/etc/a.conf" → "etc_a.conf".
            let flat = target.trim_start_matches('/').replace('/', "_");
            if !plain_file_name(&flat) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "config target {target:?} is not a file path"
                )));
            }
            let mode = if r.mode == 0 { 0o444 } else { r.mode };
            plan.push((
                dir.join(CONFIGS_SUBDIR).join(flat),
                target,
                mode,
                find(&a.configs, r, "config")?,
            ));
        }
        let mounts = plan
            .iter()
            .map(|(host_path, target, _, _)| FileMount {
                host_path: host_path.clone(),
                target: target.clone(),
            })
            .collect();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            for (path, _, mode, data) in plan {
                write_file(&path, mode, &data)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(mounts)
    }
}

/// Writes `data` to `path` with `mode`, atomically (temp file + rename); parent
/// directories are created 0700.
fn write_file(path: &Path, mode: u32, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)?;
    let tmp = parent.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl ContainerRuntime for DockerRuntime {
    async fn prepare(&self, a: &Assignment) -> Result<Prepared> {
        let spec = a
            .spec
            .as_ref()
            .ok_or_else(|| RuntimeError::InvalidSpec("assignment has no spec".into()))?;
        for n in &spec.network_definitions {
            self.ensure_network(n).await?;
        }
        for v in &spec.volumes {
            if let Some(volume_mount::Source::Volume(name)) = &v.source {
                let opts: HashMap<String, String> = v
                    .driver_options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                self.ensure_volume(name, &v.driver, &opts).await?;
            }
        }
        let image = self.ensure_image(a, spec).await?;
        let files = self.write_files(a, spec).await?;
        Ok(Prepared { image, files })
    }

    async fn create(&self, a: &Assignment, prepared: &Prepared) -> Result<ContainerId> {
        let mut body = container_config(a, prepared)?;
        body.labels
            .get_or_insert_with(Default::default)
            .insert(LABEL_NODE.into(), self.node.clone());
        let name = container_name(a);
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = match self.docker.create_container(Some(opts), body).await {
            Ok(c) => c,
            Err(e) if docker_status(&e) == Some(409) => {
                return Err(RuntimeError::AlreadyExists(name));
            }
            Err(e) => return Err(e.into()),
        };
        let id = ContainerId(created.id);
        let spec = a.spec.clone().unwrap_or_default();
        for (network, endpoint) in extra_networks(&spec) {
            let req = NetworkConnectRequest {
                container: id.0.clone(),
                endpoint_config: Some(endpoint),
            };
            if let Err(e) = self.docker.connect_network(&network, req).await {
                // Leave nothing half-made behind.
                let _ = self.remove(&id).await;
                return Err(e.into());
            }
        }
        tracing::info!(container = %name, id = %id, "created container");
        Ok(id)
    }

    async fn start(&self, id: &ContainerId) -> Result<()> {
        match self.docker.start_container(&id.0, None).await {
            Ok(()) => Ok(()),
            // 304: already running.
            Err(e) if docker_status(&e) == Some(304) => Ok(()),
            Err(e) if docker_status(&e) == Some(404) => Err(RuntimeError::NotFound(id.0.clone())),
            Err(e) => Err(e.into()),
        }
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<()> {
        let secs = i32::try_from(grace.as_secs() + u64::from(grace.subsec_nanos() > 0))
            .unwrap_or(i32::MAX);
        let opts = StopContainerOptionsBuilder::new().t(secs).build();
        match self.docker.stop_container(&id.0, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(docker_status(&e), Some(304 | 404)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove(&self, id: &ContainerId) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(&id.0, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if docker_status(&e) == Some(404) => Ok(()),
            // 409: removal already in progress.
            Err(e) if docker_status(&e) == Some(409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn inspect(&self, id: &ContainerId) -> Result<Observed> {
        let c = match self.docker.inspect_container(&id.0, None).await {
            Ok(c) => c,
            Err(e) if docker_status(&e) == Some(404) => {
                return Err(RuntimeError::NotFound(id.0.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        let state = c.state.unwrap_or_default();
        let status = match state.status {
            Some(ContainerStateStatusEnum::CREATED) => ContainerStatus::Created,
            Some(ContainerStateStatusEnum::RUNNING) => ContainerStatus::Running,
            Some(ContainerStateStatusEnum::PAUSED) => ContainerStatus::Paused,
            Some(ContainerStateStatusEnum::RESTARTING) => ContainerStatus::Restarting,
            Some(ContainerStateStatusEnum::REMOVING) => ContainerStatus::Removing,
            Some(ContainerStateStatusEnum::EXITED) => ContainerStatus::Exited,
            Some(ContainerStateStatusEnum::DEAD) => ContainerStatus::Dead,
            _ => ContainerStatus::Unknown,
        };
        let container_id = c.id.unwrap_or_else(|| id.0.clone());
        let running = state.running.unwrap_or(false);
        let oom_killed = state.oom_killed.unwrap_or(false)
            || (!running && self.oom_seen.contains(&container_id));
        let net = c.network_settings.unwrap_or_default();
        let mut endpoints = Vec::new();
        for (key, bindings) in net.ports.unwrap_or_default() {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let Ok(container_port) = port.parse::<u32>() else {
                continue;
            };
            for b in bindings.unwrap_or_default() {
                let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse().ok()) else {
                    continue;
                };
                endpoints.push(Endpoint {
                    container_port,
                    protocol: protocol_from_name(proto) as i32,
                    host_ip: b.host_ip.unwrap_or_default(),
                    host_port,
                    name: String::new(),
                });
            }
        }
        endpoints.sort_by(|a, b| {
            (a.container_port, a.protocol, &a.host_ip).cmp(&(
                b.container_port,
                b.protocol,
                &b.host_ip,
            ))
        });
        let mut networks: Vec<String> = net.networks.unwrap_or_default().into_keys().collect();
        networks.sort();
        Ok(Observed {
            container_id: ContainerId(container_id),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            status,
            running,
            exit_code: state
                .exit_code
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(0),
            oom_killed,
            error: state.error.unwrap_or_default(),
            health: health_from(state.health.and_then(|h| h.status)),
            started_at: timestamp(state.started_at.as_deref()),
            finished_at: timestamp(state.finished_at.as_deref()),
            endpoints,
            networks,
            labels: c.config.and_then(|c| c.labels).unwrap_or_default(),
        })
    }

    async fn list_owned(&self) -> Result<Vec<OwnedContainer>> {
        let filters = HashMap::from([("label", self.owned_filter())]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self.docker.list_containers(Some(opts)).await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
                Some(OwnedContainer {
                    container_id: ContainerId(c.id?),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    allocation_id: label(LABEL_ALLOCATION),
                    service: label(LABEL_SERVICE),
                    spec_hash: label(LABEL_SPEC_HASH),
                    slot: labels.get(LABEL_SLOT).and_then(|s| s.parse().ok()),
                    fallback: label(LABEL_FALLBACK),
                    running: matches!(
                        c.state,
                        Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                    ),
                })
            })
            .collect())
    }

    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent>> {
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("label", self.owned_filter()),
            (
                "event",
                ["start", "die", "oom", "health_status", "destroy"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        let opts = EventsOptionsBuilder::new().filters(&filters).build();
        let oom_seen = self.oom_seen.clone();
        self.docker
            .events(Some(opts))
            .filter_map(move |item| {
                let event = item.map(event_of).map_err(RuntimeError::from).transpose();
                if let Some(Ok(e)) = &event {
                    oom_seen.record(e);
                }
                std::future::ready(event)
            })
            .boxed()
    }

    async fn ping(&self) -> Result<()> {
        self.docker.ping().await?;
        Ok(())
    }

    async fn release_files(&self, allocation_id: &str) -> Result<()> {
        if !plain_file_name(allocation_id) {
            return Ok(());
        }
        match tokio::fs::remove_dir_all(self.files_dir(allocation_id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, kind: RuntimeEventKind) -> RuntimeEvent {
        RuntimeEvent {
            container_id: ContainerId(id.into()),
            allocation_id: "a".into(),
            kind,
        }
    }

    /// An `oom` event marks the container until its next start or its removal, and
    /// the set stays bounded.
    #[test]
    fn oom_events_mark_a_container_until_it_starts_again() {
        let seen = OomSeen::default();
        seen.record(&event(
            "c1",
            RuntimeEventKind::Die {
                exit_code: Some(137),
            },
        ));
        assert!(!seen.contains("c1"));
        seen.record(&event("c1", RuntimeEventKind::Oom));
        assert!(seen.contains("c1"));
        assert!(!seen.contains("c2"));
        seen.record(&event("c1", RuntimeEventKind::Start));
        assert!(!seen.contains("c1"));
        seen.record(&event("c1", RuntimeEventKind::Oom));
        seen.record(&event("c1", RuntimeEventKind::Destroy));
        assert!(!seen.contains("c1"));
        for i in 0..OOM_SEEN_MAX + 10 {
            seen.record(&event(&format!("x{i}"), RuntimeEventKind::Oom));
        }
        assert_eq!(seen.0.lock().unwrap().len(), OOM_SEEN_MAX);
    }

    /// An engine that is not there is told apart from one that answers with an error.
    #[tokio::test]
    async fn an_unreachable_engine_is_not_the_containers_fault() {
        let dir = tempfile::tempdir().unwrap();
        // A socket whose engine died: the file is left, nothing listens.
        let socket = dir.path().join("gone.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let docker =
            Docker::connect_with_unix(socket.to_str().unwrap(), 5, bollard::API_DEFAULT_VERSION)
                .unwrap();
        let runtime = DockerRuntime::new(docker, "n1", dir.path().join("secrets"));
        let e = runtime
            .start(&ContainerId("no-such-container".into()))
            .await
            .unwrap_err();
        assert!(e.is_engine_unreachable(), "{e:?}");
        assert!(!RuntimeError::InvalidSpec("bad".into()).is_engine_unreachable());

        // A real engine's 404 is an answer, not an outage.
        let Ok(docker) = crate::docker::connect(None).await else {
            eprintln!("no Docker engine here; the 404 half is skipped");
            return;
        };
        let runtime = DockerRuntime::new(docker, "n1", dir.path().join("secrets"));
        let e = runtime
            .start(&ContainerId("constellation-no-such-container".into()))
            .await
            .unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
        assert!(!e.is_engine_unreachable(), "{e:?}");
    }

    #[test]
    fn default_tag() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("a/b:1"), "a/b:1");
        assert_eq!(with_default_tag("reg:5000/b"), "reg:5000/b:latest");
        assert_eq!(with_default_tag("b@sha256:00"), "b@sha256:00");
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(Some("0001-01-01T00:00:00Z")), None);
        let t = timestamp(Some("2026-11-23T13:24:20.123456789Z")).unwrap();
        assert_eq!(t.nanos, 123_456_789);
        assert!(t.seconds > 1_700_000_000);
    }

    #[test]
    fn events_parse() {
        let msg = EventMessage {
            action: Some("health_status: healthy".into()),
            actor: Some(bollard::models::EventActor {
                id: Some("abc".into()),
                attributes: Some(HashMap::from([(LABEL_ALLOCATION.into(), "al".into())])),
            }),
            ..Default::default()
        };
        let e = event_of(msg).unwrap();
        assert_eq!(e.kind, RuntimeEventKind::Health(HealthState::Healthy));
        assert_eq!(e.allocation_id, "al");
        let die = EventMessage {
            action: Some("die".into()),
            actor: Some(bollard::models::EventActor {
                id: Some("abc".into()),
                attributes: Some(HashMap::from([("exitCode".into(), "3".into())])),
            }),
            ..Default::default()
        };
        assert_eq!(
            event_of(die).unwrap().kind,
            RuntimeEventKind::Die { exit_code: Some(3) }
        );
    }

    #[test]
    fn file_names() {
        assert!(plain_file_name("db_password"));
        assert!(!plain_file_name("../x"));
        assert!(!plain_file_name(".."));
        assert!(!plain_file_name(""));
    }
}
