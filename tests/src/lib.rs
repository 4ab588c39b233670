//! Shared helpers for Constellation's integration tests (crate `constellation-tests`).
//!
//! Owns:
//! - [`api`]: clients of a running control plane's gRPC API.
//! - [`binaries`]: starting the real Constellation binaries on kernel-chosen ports and
//!   stopping them.
//! - [`http`]: a small HTTP/1.1 client for the gateway's REST routes and streams.
//! - [`docker`]: reaching the test Docker daemon (honouring `DOCKER_HOST`), the name of the
//!   local busybox test image, and small container helpers (unique names, wait, logs, a
//!   removal guard) that integration tests under `tests/tests/` reuse.
//!
//! The test image itself is built by `tests/fixtures/busybox-image/build.sh`; `.ci/run`
//! builds it before the tests run.

#![forbid(unsafe_code)]

pub mod api;
pub mod binaries;
pub mod failover;
pub mod hosts;
pub mod http;
pub mod specs;

/// Polls `ok` every 100 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: std::time::Duration, what: &str, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !ok().await {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub mod docker {
    //! Docker access for tests.
    //!
    //! Owns the connection policy for tests ([`connect`], [`connect_or_skip`]), the test image
    //! name ([`test_image`]) and container lifecycle helpers ([`ContainerGuard`],
    //! [`wait_for_exit`], [`collect_logs`], [`unique_name`]).
    //!
    //! Policy: when Docker is unreachable a test fails if `CI` is set, and otherwise prints a
    //! loud `SKIPPED: no Docker` line and returns early.

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use anyhow::{Context, bail};
    use bollard::errors::Error as BollardError;
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{
        CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
        WaitContainerOptionsBuilder,
    };
    use futures::StreamExt;

    pub use bollard::Docker;

    /// Image used when `CONSTELLATION_TEST_IMAGE` is not set.
    pub const DEFAULT_TEST_IMAGE: &str = "constellation-test/busybox:latest";
    /// Environment variable naming the busybox test image.
    pub const TEST_IMAGE_ENV: &str = "CONSTELLATION_TEST_IMAGE";
    /// Label put on every container created through [`ContainerGuard`], so leftovers are
    /// easy to find: `docker ps -a --filter label=org.constellation.test`.
    pub const TEST_LABEL: &str = "org.constellation.test";
    /// Body of `/www/index.html` in the test image (served by `httpd -h /www`).
    pub const TEST_IMAGE_INDEX_HTML: &str = "constellation-test busybox httpd OK";

    /// The busybox test image: `$CONSTELLATION_TEST_IMAGE` or [`DEFAULT_TEST_IMAGE`].
    pub fn test_image() -> String {
        std::env::var(TEST_IMAGE_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_TEST_IMAGE.to_string())
    }

    /// True when running under CI (`CI` set to anything but empty, `0` or `false`).
    pub fn in_ci() -> bool {
        std::env::var("CI")
            .map(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
            .unwrap_or(false)
    }

    /// Human-readable description of the daemon address we are going to use.
    pub fn docker_host() -> String {
        std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock (default)".to_string())
    }

    /// Connects to the Docker daemon named by `DOCKER_HOST` (default: the local socket),
    /// negotiates the API version down to what the daemon supports, and pings it.
    pub async fn connect() -> anyhow::Result<Docker> {
        let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        let docker = match host.as_deref() {
            // `connect_with_local_defaults` only honours unix:// hosts; tcp:// etc. go
            // through the generic constructor.
            Some(h) if !h.starts_with("unix://") => Docker::connect_with_defaults(),
            _ => Docker::connect_with_local_defaults(),
        }
        .with_context(|| format!("cannot create a Docker client for {}", docker_host()))?;
        // bollard speaks a newer API than e.g. Debian's dockerd 20.10 (API 1.41) accepts.
        let docker = docker
            .negotiate_version()
            .await
            .with_context(|| format!("Docker daemon at {} is not answering", docker_host()))?;
        docker
            .ping()
            .await
            .with_context(|| format!("Docker daemon at {} did not answer ping", docker_host()))?;
        Ok(docker)
    }

    /// Connects for a test that needs Docker.
    ///
    /// Returns an error (failing the test) when Docker is unreachable and `CI` is set; when
    /// `CI` is not set it prints a loud skip line and returns `Ok(None)` so the test can
    /// return early.
    pub async fn connect_or_skip(test: &str) -> anyhow::Result<Option<Docker>> {
        match connect().await {
            Ok(docker) => Ok(Some(docker)),
            Err(err) if in_ci() => Err(err.context(format!(
                "{test}: Docker is required in CI (CI is set) but unreachable; \
                 start dockerd or set DOCKER_HOST (.ci/run does this)"
            ))),
            Err(err) => {
                eprintln!(
                    "\n==== SKIPPED: no Docker ==== {test}: {err:#}\n\
                     ==== (set CI=1 to make this a failure; .ci/run starts dockerd) ====\n"
                );
                Ok(None)
            }
        }
    }

    /// Fails with a hint when `image` is not present locally (no registry is reachable,
    /// so it has to be built with `tests/fixtures/busybox-image/build.sh`).
    pub async fn require_image(docker: &Docker, image: &str) -> anyhow::Result<()> {
        docker
            .inspect_image(image)
            .await
            .map(drop)
            .with_context(|| {
                format!(
                    "test image {image} is not available on {}; build it with \
                     tests/fixtures/busybox-image/build.sh",
                    docker_host()
                )
            })
    }

    /// A container name unique across processes and calls: `{prefix}-{pid}-{nanos}-{n}`.
    pub fn unique_name(prefix: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{}-{nanos}-{n}", std::process::id())
    }

    /// Owns one test container and force-removes it when dropped, including when the test
    /// panics. Prefer calling [`ContainerGuard::remove`] explicitly before asserting, so
    /// removal errors are reported; `Drop` is the safety net.
    pub struct ContainerGuard {
        name: String,
        docker: Option<Docker>,
    }

    impl ContainerGuard {
        /// Creates (but does not start) a container called `name` from `config`, labelled
        /// with [`TEST_LABEL`].
        pub async fn create(
            docker: &Docker,
            name: &str,
            mut config: ContainerCreateBody,
        ) -> anyhow::Result<Self> {
            config
                .labels
                .get_or_insert_with(HashMap::new)
                .insert(TEST_LABEL.to_string(), name.to_string());
            let options = CreateContainerOptionsBuilder::default().name(name).build();
            docker
                .create_container(Some(options), config)
                .await
                .with_context(|| format!("creating container {name}"))?;
            Ok(Self {
                name: name.to_string(),
                docker: Some(docker.clone()),
            })
        }

        /// The container name.
        pub fn name(&self) -> &str {
            &self.name
        }

        /// Force-removes the container (and its anonymous volumes) now.
        pub async fn remove(mut self) -> anyhow::Result<()> {
            match self.docker.take() {
                Some(docker) => force_remove(&docker, &self.name).await,
                None => Ok(()),
            }
        }
    }

    impl Drop for ContainerGuard {
        fn drop(&mut self) {
            if self.docker.take().is_none() {
                return;
            }
            let name = std::mem::take(&mut self.name);
            cleanup_in_thread("test container", async move {
                let docker = connect().await?;
                force_remove(&docker, &name).await
            });
        }
    }

    /// Removes, when dropped, every container of the named Constellation nodes: what
    /// a test's agents leave on the engine when they are stopped (or killed) before
    /// they have removed their containers. Declare it before the agents, so it drops
    /// after them.
    pub struct NodeContainersGuard {
        nodes: Vec<String>,
    }

    impl NodeContainersGuard {
        pub fn new<S: AsRef<str>>(nodes: &[S]) -> Self {
            Self {
                nodes: nodes.iter().map(|n| n.as_ref().to_owned()).collect(),
            }
        }
    }

    impl Drop for NodeContainersGuard {
        fn drop(&mut self) {
            let nodes = std::mem::take(&mut self.nodes);
            cleanup_in_thread("containers of test nodes", async move {
                let docker = connect().await?;
                for node in &nodes {
                    for name in containers_with_label("constellation.node", node).await? {
                        force_remove(&docker, name.trim_start_matches('/')).await?;
                    }
                }
                Ok(())
            });
        }
    }

    /// Runs a cleanup from a `Drop`: we cannot await there, and the test's runtime may
    /// be single-threaded and blocked in the drop, so it runs on a fresh runtime in a
    /// thread. Failures are printed, not raised.
    fn cleanup_in_thread(
        what: &'static str,
        cleanup: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let result = std::thread::spawn(move || -> anyhow::Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(cleanup)
        })
        .join();
        match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("warning: cleanup of {what} failed: {err:#}"),
            Err(_) => eprintln!("warning: cleanup thread for {what} panicked"),
        }
    }

    async fn force_remove(docker: &Docker, name: &str) -> anyhow::Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            // Already gone: fine.
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(err) => Err(err).with_context(|| format!("removing container {name}")),
        }
    }

    /// Waits up to `timeout` for the container to stop and returns its exit code.
    pub async fn wait_for_exit(
        docker: &Docker,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<i64> {
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut stream = docker.wait_container(name, Some(options));
        let next = tokio::time::timeout(timeout, stream.next())
            .await
            .with_context(|| format!("container {name} did not exit within {timeout:?}"))?;
        match next {
            Some(Ok(resp)) => Ok(resp.status_code),
            // bollard turns a non-zero exit into an error; it is still an exit code.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(err)) => Err(err).with_context(|| format!("waiting for container {name}")),
            None => bail!("wait stream for container {name} ended without a status"),
        }
    }

    /// Names of the containers (running or not) carrying label `key=value`.
    pub async fn containers_with_label(key: &str, value: &str) -> anyhow::Result<Vec<String>> {
        use bollard::query_parameters::ListContainersOptionsBuilder;
        let docker = connect().await?;
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = docker.list_containers(Some(options)).await?;
        Ok(list
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .collect())
    }

    /// Everything the container wrote to stdout and stderr so far, as lossy UTF-8.
    pub async fn collect_logs(docker: &Docker, name: &str) -> anyhow::Result<String> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(false)
            .build();
        let mut stream = docker.logs(name, Some(options));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("reading logs of container {name}"))?;
            out.extend_from_slice(chunk.as_ref());
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}
