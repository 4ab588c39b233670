//! The Traefik endpoint benchmark: a view of N services × R replicas built in-process
//! (no cluster), the render time of the whole document, the latency of `GET /traefik`
//! from concurrent keep-alive pollers against the gateway's HTTP router served on
//! loopback, and the time from one allocation's health change (published to the view)
//! to the first poll that returns the new document.

use anyhow::{Context, bail};
use constellation_gateway::traefik::{self, Provider, RenderOptions};
use constellation_gateway::view::{Lists, Snapshot, View, feed};
use constellation_gateway::{http, upstream::Upstream};
use constellation_proto::v1 as pb;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

const NODES: usize = 10;

/// What one run measured, for the comparison's table.
pub struct Measured {
    /// `(pollers, gzip, p50, p99)` per polling level.
    pub polls: Vec<(usize, bool, Duration, Duration)>,
    /// From a health event applied to the view until a gzip poll shows it, per change.
    pub change_to_document: Vec<Duration>,
}

pub async fn run(
    services: usize,
    replicas: usize,
    seconds: u64,
    clients: &[usize],
    changes: usize,
) -> anyhow::Result<Measured> {
    let mut measured = Measured {
        polls: Vec::new(),
        change_to_document: Vec::new(),
    };
    let mut state = State::build(services, replicas);
    println!(
        "{services} services x {replicas} replicas on {NODES} nodes ({} allocations)",
        state.allocations.len()
    );

    // Render time of the whole document, best and median of a few runs.
    let options = RenderOptions::default();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..7 {
        let start = Instant::now();
        let rendered = traefik::render(&state.services, &state.nodes, &state.allocations, &options);
        times.push(start.elapsed());
        size = rendered.json.len();
        anyhow::ensure!(rendered.errors.is_empty(), "{:?}", &rendered.errors[..1]);
    }
    times.sort();
    println!(
        "full render: median {:.1?}, best {:.1?}; document {:.2} MiB",
        times[times.len() / 2],
        times[0],
        size as f64 / (1024.0 * 1024.0)
    );
    // What the gateway does on a change: the renderer keeps each service's part and
    // rebuilds only the changed one, then assembles the document.
    let mut renderer = traefik::Renderer::new(options.clone());
    renderer.render(&state.services, &state.nodes, &state.allocations);
    let mut times = Vec::new();
    for i in 0..21 {
        let id = state
            .allocations
            .keys()
            .nth(i * 7919 % state.allocations.len())
            .cloned()
            .context("allocation")?;
        let health = if i % 2 == 0 {
            pb::HealthState::Unhealthy
        } else {
            pb::HealthState::Healthy
        };
        set_health(&mut state, &id, health)?;
        let start = Instant::now();
        let rendered = renderer.render(&state.services, &state.nodes, &state.allocations);
        times.push(start.elapsed());
        drop(rendered);
        set_health(&mut state, &id, pb::HealthState::Healthy)?;
    }
    renderer.render(&state.services, &state.nodes, &state.allocations);
    times.sort();
    println!(
        "render after one health change, comparing every service: median {:.1?}, best {:.1?}",
        times[times.len() / 2],
        times[0]
    );
    // What the gateway does since the view keeps a journal: the event applied to the
    // view names the one service to look at.
    let mut view = state.view(1);
    let mut renderer = traefik::Renderer::new(options.clone());
    renderer.render_view(&view);
    let mut times = Vec::new();
    let mut copies = Vec::new();
    for i in 0..21 {
        let id = nth_allocation(&state, i)?;
        view.apply(&health_event(
            &mut state,
            &id,
            pb::HealthState::Unhealthy,
            2 * i as u64 + 2,
        )?);
        let start = Instant::now();
        let rendered = renderer.render_view(&view);
        times.push(start.elapsed());
        drop(rendered);
        view.apply(&health_event(
            &mut state,
            &id,
            pb::HealthState::Healthy,
            2 * i as u64 + 3,
        )?);
        renderer.render_view(&view);
        let start = Instant::now();
        let copy = view.clone();
        copies.push(start.elapsed());
        drop(copy);
    }
    times.sort();
    copies.sort();
    println!(
        "render after one health change, the services the view's journal names: median {:.1?}, best {:.1?}",
        times[times.len() / 2],
        times[0]
    );
    println!(
        "copy of the whole view (the feed's copy on write): median {:.1?}, best {:.1?}",
        copies[copies.len() / 2],
        copies[0]
    );

    // The gateway's router with the provider, on loopback.
    let (tx, channels) = feed::channels(Duration::from_secs(3600));
    let provider = Provider::new(channels.snapshots.clone(), options);
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(Arc::clone(&provider).keep_rendered(shutdown.clone()));
    let app = app(channels, Arc::clone(&provider))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    let mut index = 100;
    let mut view = feed::TwoCopies::new(state.view(index));
    publish_view(&tx, Arc::clone(view.current()));
    let mut probe = Conn::open(&addr).await?;
    let start = Instant::now();
    loop {
        let (status, _) = probe.get("/traefik").await?;
        if status == 200 {
            break;
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "no document");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("serving on {addr}; {seconds} s per level");

    println!();
    // Traefik's Go client asks for gzip; identity is shown for comparison.
    println!(
        "{:>8} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "pollers", "encoding", "req/s", "p50", "p99", "max"
    );
    for &n in clients {
        for gzip in [true, false] {
            let level = poll_level(&addr, n, Duration::from_secs(seconds), gzip).await?;
            measured.polls.push((n, gzip, level.p50, level.p99));
            println!(
                "{:>8} {:>9} {:>10.0} {:>10.2?} {:>10.2?} {:>10.2?}",
                n,
                if gzip { "gzip" } else { "identity" },
                level.rate,
                level.p50,
                level.p99,
                level.max
            );
        }
    }

    // Health change to new document, with one poller polling back to back: an
    // allocation turns unhealthy (an event applied to the view as the feed applies it,
    // to its two copies), its server leaves the document (which shrinks). Measured
    // from the publication of the changed view, and from the event itself.
    // Last, as Traefik polls: with gzip, whose copy of the new document follows one
    // compression after the render.
    println!();
    for (from_event, gzip) in [(false, false), (true, false), (true, true)] {
        probe.gzip = gzip;
        // The compressed copy of the last document follows its render.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, full) = probe.get("/traefik").await?;
        let mut delays = Vec::new();
        for i in 0..changes {
            let alloc_id = nth_allocation(&state, i)?;
            index += 1;
            let event = health_event(&mut state, &alloc_id, pb::HealthState::Unhealthy, index)?;
            let change = feed::Change::Events(Arc::new(pb::WatchResponse {
                last_index: index,
                events: vec![event],
            }));
            let started = if from_event {
                let started = Instant::now();
                view.change(change);
                started
            } else {
                view.change(change);
                Instant::now()
            };
            publish_view(&tx, Arc::clone(view.current()));
            loop {
                let (status, body) = probe.get("/traefik").await?;
                anyhow::ensure!(status == 200, "status {status}");
                if body != full {
                    break;
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(10),
                    "change never showed"
                );
            }
            delays.push(started.elapsed());
            // Back to healthy, and wait for the full document before the next change.
            index += 1;
            let event = health_event(&mut state, &alloc_id, pb::HealthState::Healthy, index)?;
            view.change(feed::Change::Events(Arc::new(pb::WatchResponse {
                last_index: index,
                events: vec![event],
            })));
            publish_view(&tx, Arc::clone(view.current()));
            while probe.get("/traefik").await?.1 != full {}
        }
        delays.sort();
        if from_event && gzip {
            measured.change_to_document = delays.clone();
        }
        if !delays.is_empty() {
            println!(
                "health change to new document, {} ({} changes): p50 {:.1?}, max {:.1?}",
                match (from_event, gzip) {
                    (false, _) => "from the publication",
                    (true, false) => "from the event applied to the view",
                    (true, true) => "from the event, polled with gzip",
                },
                delays.len(),
                delays[delays.len() / 2],
                delays[delays.len() - 1]
            );
        }
    }
    shutdown.cancel();
    Ok(measured)
}

struct Level {
    rate: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn poll_level(
    addr: &str,
    clients: usize,
    duration: Duration,
    gzip: bool,
) -> anyhow::Result<Level> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let addr = addr.to_owned();
        tasks.spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            conn.gzip = gzip;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let (status, _) = conn.get("/traefik").await?;
                anyhow::ensure!(status == 200, "status {status}");
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined??);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    Ok(Level {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        max: latencies[latencies.len() - 1],
    })
}

fn publish_view(tx: &watch::Sender<Snapshot>, view: Arc<View>) {
    tx.send_replace(Snapshot {
        view,
        synced: true,
        lost_since: None,
        stale_after: Duration::from_secs(3600),
    });
}

fn set_health(state: &mut State, id: &str, health: pb::HealthState) -> anyhow::Result<()> {
    let alloc = state.allocations.get_mut(id).context("allocation")?;
    alloc.status.as_mut().context("status")?.health = health as i32;
    Ok(())
}

/// The `i`th allocation of a spread sample.
fn nth_allocation(state: &State, i: usize) -> anyhow::Result<String> {
    state
        .allocations
        .keys()
        .nth(i * 7919 % state.allocations.len())
        .cloned()
        .context("allocation")
}

/// Sets an allocation's health in `state` and returns the event the control plane
/// sends for it (the whole allocation).
fn health_event(
    state: &mut State,
    id: &str,
    health: pb::HealthState,
    index: u64,
) -> anyhow::Result<pb::Event> {
    set_health(state, id, health)?;
    Ok(pb::Event {
        index,
        time: None,
        payload: Some(pb::event::Payload::Allocation(pb::AllocationEvent {
            kind: pb::ChangeKind::Updated as i32,
            allocation: state.allocations.get(id).cloned(),
        })),
    })
}

/// The gateway's whole HTTP surface (every route and layer) with the Traefik provider,
/// as the binary serves it; the control-plane address is never called here.
fn app(channels: feed::Channels, provider: Arc<Provider>) -> anyhow::Result<axum::Router> {
    let upstream = Upstream::new(&["127.0.0.1:1".to_string()], Duration::from_secs(1))?;
    let state = http::AppState::new(channels, Arc::new(upstream));
    Ok(http::router(state).layer(axum::Extension(provider)))
}

/// The cluster: services with typical Traefik labels, replicas spread over the nodes.
struct State {
    services: BTreeMap<String, pb::Service>,
    nodes: BTreeMap<String, pb::Node>,
    allocations: BTreeMap<String, pb::Allocation>,
}

impl State {
    fn build(services: usize, replicas: usize) -> Self {
        let nodes: BTreeMap<String, pb::Node> = (0..NODES)
            .map(|n| {
                let name = format!("node-{n}");
                let node = pb::Node {
                    id: format!("id-{n}"),
                    description: Some(pb::NodeDescription {
                        name: name.clone(),
                        addresses: Some(pb::NodeAddresses {
                            advertise_ip: format!("10.0.{}.{}", n / 250, n % 250 + 1),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    status: pb::NodeStatus::Ready as i32,
                    availability: pb::NodeAvailability::Active as i32,
                    ..Default::default()
                };
                (name, node)
            })
            .collect();
        let mut all_services = BTreeMap::new();
        let mut allocations = BTreeMap::new();
        for s in 0..services {
            let name = format!("svc-{s:05}");
            let mut labels: BTreeMap<String, String> = [
                ("traefik.enable".to_string(), "true".to_string()),
                (
                    format!("traefik.http.routers.{name}.rule"),
                    format!("Host(`{name}.apps.example.com`)"),
                ),
                (
                    format!("traefik.http.routers.{name}.entrypoints"),
                    "websecure".to_string(),
                ),
                (
                    format!("traefik.http.routers.{name}.tls.certresolver"),
                    "le".to_string(),
                ),
            ]
            .into();
            if s % 10 == 0 {
                labels.insert(
                    format!("traefik.http.routers.{name}.middlewares"),
                    format!("{name}-strip"),
                );
                labels.insert(
                    format!("traefik.http.middlewares.{name}-strip.stripprefix.prefixes"),
                    "/api".to_string(),
                );
            }
            let spec = pb::ServiceSpec {
                name: name.clone(),
                image: "registry.example.com/web:1".into(),
                labels,
                ports: vec![pb::PortSpec {
                    container_port: 8080,
                    ..Default::default()
                }],
                replicas: Some(replicas as u32),
                ..Default::default()
            };
            all_services.insert(
                name.clone(),
                pb::Service {
                    spec: Some(spec),
                    version: 1,
                    ..Default::default()
                },
            );
            for r in 0..replicas {
                let n = (s + r) % NODES;
                let id = format!("{name}-{r}");
                allocations.insert(
                    id.clone(),
                    pb::Allocation {
                        id,
                        service_name: name.clone(),
                        node_id: format!("id-{n}"),
                        node_name: format!("node-{n}"),
                        slot: r as u32,
                        status: Some(pb::AllocationStatus {
                            state: pb::AllocationState::Running as i32,
                            health: pb::HealthState::Healthy as i32,
                            endpoints: vec![pb::Endpoint {
                                container_port: 8080,
                                protocol: pb::Protocol::Tcp as i32,
                                host_ip: "0.0.0.0".into(),
                                host_port: 20000 + (s * replicas + r) as u32 % 40000,
                                name: String::new(),
                            }],
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                );
            }
        }
        Self {
            services: all_services,
            nodes,
            allocations,
        }
    }

    fn view(&self, index: u64) -> View {
        View::from_lists(Lists {
            services: pb::ListServicesResponse {
                services: self.services.values().cloned().collect(),
                index,
            },
            nodes: pb::ListNodesResponse {
                nodes: self.nodes.values().cloned().collect(),
                index,
            },
            allocations: pb::ListAllocationsResponse {
                allocations: self.allocations.values().cloned().collect(),
                index,
            },
            leases: pb::ListLeasesResponse {
                leases: Vec::new(),
                index,
            },
            migrations: pb::ListMigrationsResponse {
                migrations: Vec::new(),
                index,
            },
            status: pb::ClusterStatusResponse {
                event_index: index,
                ..Default::default()
            },
        })
    }
}

/// One keep-alive HTTP/1.1 connection, as Traefik's poller keeps one.
struct Conn {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
    /// Send `Accept-Encoding: gzip`, as Go's HTTP client (Traefik's) does by default.
    gzip: bool,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::with_capacity(256 * 1024, stream),
            request: Vec::new(),
            gzip: false,
        })
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        self.request.clear();
        let encoding = if self.gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        self.request.extend_from_slice(
            format!(
                "GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: Go-http-client/1.1\r\n{encoding}\r\n"
            )
            .as_bytes(),
        );
        self.stream.get_mut().write_all(&self.request).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = Some(value.trim().parse::<usize>()?);
            }
        }
        let Some(length) = length else {
            bail!("no content-length in the answer");
        };
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }
}
