//! The REST read benchmark: a view of N services × R replicas built in-process (no
//! cluster), published the way the feed publishes it, and `GET /api/v1/services`
//! from concurrent clients against the gateway's HTTP router on loopback: requests per
//! second and latency percentiles (the whole answer read, one connection per request).

use constellation_gateway::view::{Lists, Snapshot, View, feed};
use constellation_gateway::{http, upstream::Upstream};
use constellation_proto::v1 as pb;
use constellation_tests::http::HttpRequest;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODES: usize = 10;

fn view(services: usize, replicas: usize) -> View {
    let nodes = (0..NODES)
        .map(|i| pb::Node {
            id: format!("node-id-{i}"),
            status: pb::NodeStatus::Ready as i32,
            description: Some(pb::NodeDescription {
                name: format!("node-{i}"),
                addresses: Some(pb::NodeAddresses {
                    advertise_ip: format!("10.0.0.{i}"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let mut all_services = Vec::new();
    let mut allocations = Vec::new();
    for s in 0..services {
        let name = format!("svc-{s:05}");
        all_services.push(pb::Service {
            spec: Some(pb::ServiceSpec {
                name: name.clone(),
                image: "nginx:alpine".into(),
                replicas: Some(replicas as u32),
                labels: [("traefik.enable".to_owned(), "true".to_owned())].into(),
                ports: vec![pb::PortSpec {
                    container_port: 80,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            version: 1,
            status: Some(pb::ServiceStatus {
                desired: replicas as u32,
                running: replicas as u32,
                healthy: replicas as u32,
                ..Default::default()
            }),
            ..Default::default()
        });
        for r in 0..replicas {
            let node = (s + r) % NODES;
            allocations.push(pb::Allocation {
                id: format!("{name}-{r}"),
                service_name: name.clone(),
                node_id: format!("node-id-{node}"),
                node_name: format!("node-{node}"),
                slot: r as u32,
                status: Some(pb::AllocationStatus {
                    state: pb::AllocationState::Running as i32,
                    health: pb::HealthState::Healthy as i32,
                    endpoints: vec![pb::Endpoint {
                        container_port: 80,
                        host_ip: format!("10.0.0.{node}"),
                        host_port: 30000 + (s % 30000) as u32,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    View::from_lists(Lists {
        services: pb::ListServicesResponse {
            services: all_services,
            index: 1,
        },
        nodes: pb::ListNodesResponse { nodes, index: 1 },
        allocations: pb::ListAllocationsResponse {
            allocations,
            index: 1,
        },
        leases: pb::ListLeasesResponse {
            leases: vec![],
            index: 1,
        },
        migrations: pb::ListMigrationsResponse {
            migrations: vec![],
            index: 1,
        },
        status: pb::ClusterStatusResponse {
            event_index: 1,
            ..Default::default()
        },
    })
}

pub async fn run(
    services: usize,
    replicas: usize,
    seconds: u64,
    clients: &[usize],
) -> anyhow::Result<()> {
    let (publish, channels) = feed::channels(Duration::from_secs(10));
    publish.send_replace(Snapshot {
        view: Arc::new(view(services, replicas)),
        synced: true,
        lost_since: None,
        stale_after: Duration::from_secs(10),
    });
    // Nothing listens there: the bench only reads from the view.
    let upstream = Upstream::new(&["127.0.0.1:1".into()], Duration::from_secs(1))?;
    let state = http::AppState::new(channels, Arc::new(upstream));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, http::router(state)).await });

    let first = HttpRequest::new("GET", "/api/v1/services")
        .send(&addr)
        .await?;
    anyhow::ensure!(first.status == 200, "status {}", first.status);
    println!(
        "GET /api/v1/services: {services} services x {replicas} replicas, answer {:.1} MiB",
        first.body.len() as f64 / (1024.0 * 1024.0)
    );
    for &n in clients {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let workers: Vec<_> = (0..n)
            .map(|_| {
                let addr = addr.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let r = HttpRequest::new("GET", "/api/v1/services")
                            .send(&addr)
                            .await?;
                        anyhow::ensure!(r.status == 200, "status {}", r.status);
                        latencies.push(t.elapsed());
                    }
                    Ok(latencies)
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for w in workers {
            latencies.extend(w.await??);
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let pct =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        println!(
            "  {n:>3} clients: {:>7.1} req/s, p50 {:>8.1?}, p99 {:>8.1?} ({} requests)",
            latencies.len() as f64 / elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            latencies.len()
        );
    }
    Ok(())
}
