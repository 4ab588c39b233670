//! The scheduler benchmark: a cluster of N simulated nodes and services adding up to
//! M replicas, built in memory through the state machine's own commands (no Raft, no
//! processes), then one `scheduler::plan` call that places every replica. Prints
//! placements per second, the time to apply the plan, the time of a plan over the
//! full cluster that finds nothing to do (the leader plans after every applied
//! change), and the time to plan the replacements when one node goes down. Each time
//! comes with the CPU time this thread spent (from `/proc/thread-self/schedstat`), which
//! other work on a busy machine does not inflate.

use anyhow::{Context, ensure};
use constellation_controlplane::scheduler;
use constellation_controlplane::state::{COMMAND_VERSION, State};
use constellation_proto::v1 as pb;
use pb::command::Op;
use pbjson_types::Timestamp;
use std::time::{Duration, Instant};

/// Zones the nodes are spread over (label `zone`).
const ZONES: usize = 8;

pub fn run(nodes: usize, allocations: usize) -> anyhow::Result<()> {
    ensure!(nodes > 0, "--nodes must be at least 1");
    let mut clock = Clock::default();
    let mut state = State::with_history(16);
    let start = Instant::now();
    for i in 0..nodes {
        apply(&mut state, clock.next(), Op::RegisterNode(node(i)))?;
    }
    let specs = services(allocations);
    for spec in &specs {
        let op = Op::ApplyService(pb::ApplyServiceCommand {
            spec: Some(spec.clone()),
            expected_version: None,
        });
        apply(&mut state, clock.next(), op)?;
    }
    println!(
        "{nodes} nodes in {ZONES} zones, {} services asking for {allocations} replicas \
         (built in {:.1?})",
        specs.len(),
        start.elapsed()
    );

    // One plan places everything: every replica fits, so no second round is needed
    // (checked below by planning again).
    let mut next_id = 0u64;
    let mut ids = || {
        next_id += 1;
        format!("alloc-{next_id:08}")
    };
    let start = Instant::now();
    let cpu_start = cpu_time();
    let plan = scheduler::plan(&state, constellation_controlplane::cluster::now(), &mut ids)
        .context("a plan")?;
    let planned = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_start);
    let placed = plan.upserts.len();
    ensure!(
        placed == allocations,
        "placed {placed} of {allocations} replicas"
    );
    println!(
        "plan: {placed} placements in {:.2?} = {:.0} placements/s \
         (cpu {:.2?} = {:.0} placements per cpu-second)",
        planned,
        placed as f64 / planned.as_secs_f64(),
        cpu,
        placed as f64 / cpu.as_secs_f64()
    );

    let start = Instant::now();
    apply(&mut state, clock.next(), Op::Plan(plan))?;
    println!("apply the plan to the state: {:.2?}", start.elapsed());

    let noop = time_best(3, || {
        scheduler::plan(&state, constellation_controlplane::cluster::now(), &mut ids)
    });
    ensure!(noop.2.is_none(), "the plan was not a fixpoint");
    println!(
        "plan over the full cluster with nothing to do: {:.2?} (cpu {:.2?})",
        noop.0, noop.1
    );

    // A node going down: its allocations become LOST and are replaced elsewhere.
    let down = pb::SetNodeStatusCommand {
        node_id: node_id(nodes / 2),
        status: pb::NodeStatus::Down as i32,
        ..Default::default()
    };
    apply(&mut state, clock.next(), Op::SetNodeStatus(down))?;
    let (took, cpu, replan) = time_best(3, || {
        scheduler::plan(&state, constellation_controlplane::cluster::now(), &mut ids)
    });
    let replan = replan.context("replacements")?;
    let replaced = replan
        .upserts
        .iter()
        .filter(|a| !a.previous_allocation_id.is_empty())
        .count();
    println!(
        "plan after one node went down: {replaced} replacements in {took:.2?} (cpu {cpu:.2?})"
    );
    Ok(())
}

/// Runs `f` `n` times and returns the shortest wall and CPU times with its last
/// result.
fn time_best<T>(n: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let (mut wall, mut cpu) = (Duration::MAX, Duration::MAX);
    let mut last = None;
    for _ in 0..n {
        let (start, cpu_start) = (Instant::now(), cpu_time());
        let out = f();
        wall = wall.min(start.elapsed());
        cpu = cpu.min(cpu_time().saturating_sub(cpu_start));
        last = Some(out);
    }
    (wall, cpu, last.expect("n > 0"))
}

/// CPU time this thread has run, from the scheduler's own accounting (nanoseconds, the
/// first field of `/proc/thread-self/schedstat`); zero where that file is missing.
fn cpu_time() -> Duration {
    let nanos = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_nanos(nanos)
}

/// Command times one millisecond apart, as a leader would stamp them.
#[derive(Default)]
struct Clock(i64);

impl Clock {
    fn next(&mut self) -> Timestamp {
        self.0 += 1;
        Timestamp {
            seconds: 1_700_000_000 + self.0 / 1000,
            nanos: ((self.0 % 1000) * 1_000_000) as i32,
        }
    }
}

fn apply(state: &mut State, at: Timestamp, op: Op) -> anyhow::Result<()> {
    let command = pb::Command {
        version: COMMAND_VERSION,
        proposed_at: Some(at),
        op: Some(op),
    };
    let result = state.apply(&command);
    if let Some(pb::command_result::Outcome::Error(e)) = result.outcome {
        anyhow::bail!("command refused: {e:?}");
    }
    Ok(())
}

fn node_id(i: usize) -> String {
    format!("node-id-{i:05}")
}

/// Node i: 16 cores and 64 GiB, zone `z{i % 8}`, a quarter of them with `disk=ssd`.
fn node(i: usize) -> pb::RegisterNodeCommand {
    let mut labels = std::collections::HashMap::new();
    labels.insert("zone".to_string(), format!("z{}", i % ZONES));
    labels.insert("rack".to_string(), format!("r{}", i % 50));
    if i.is_multiple_of(4) {
        labels.insert("disk".to_string(), "ssd".to_string());
    }
    pb::RegisterNodeCommand {
        node_id: node_id(i),
        description: Some(pb::NodeDescription {
            name: format!("node-{i:05}"),
            capacity: Some(pb::NodeResources {
                cpu_millis: 16_000,
                memory_bytes: 64 << 30,
            }),
            labels: labels.into_iter().collect(),
            ..Default::default()
        }),
    }
}

/// Services adding up to exactly `total` replicas: a tenth in five large services
/// spread over zones, the rest in small services cycling through five shapes (plain
/// with a reservation; spread over zones; constrained to three zones with one per
/// node; constrained to SSD nodes with one per node and a larger reservation; spread
/// with at most two per node and no reservation).
fn services(total: usize) -> Vec<pb::ServiceSpec> {
    let mut specs = Vec::new();
    let mut left = total;
    let large = total / 50;
    for i in 0..5 {
        if left == 0 || large == 0 {
            break;
        }
        let replicas = large.min(left);
        let mut spec = base(format!("large-{i}"), replicas, "100m", "64Mi");
        spec.placement = Some(spread());
        specs.push(spec);
        left -= replicas;
    }
    let mut i = 0;
    while left > 0 {
        let name = format!("svc-{i:05}");
        let mut spec = match i % 10 {
            0..=5 => base(name, 3, "100m", "128Mi"),
            6 => {
                let mut spec = base(name, 6, "250m", "256Mi");
                spec.placement = Some(spread());
                spec
            }
            7 => {
                let mut spec = base(name, 4, "", "");
                spec.placement = Some(pb::Placement {
                    constraints: vec![pb::Constraint {
                        attribute: "node.labels.zone".into(),
                        operator: pb::ConstraintOperator::In as i32,
                        value: "z0,z1,z2".into(),
                    }],
                    max_per_node: 1,
                    ..Default::default()
                });
                spec
            }
            8 => {
                let mut spec = base(name, 2, "500m", "512Mi");
                spec.placement = Some(pb::Placement {
                    constraints: vec![pb::Constraint {
                        attribute: "node.labels.disk".into(),
                        operator: pb::ConstraintOperator::Equal as i32,
                        value: "ssd".into(),
                    }],
                    max_per_node: 1,
                    ..Default::default()
                });
                spec
            }
            _ => {
                let mut spec = base(name, 10, "", "");
                spec.placement = Some(pb::Placement {
                    max_per_node: 2,
                    ..spread()
                });
                spec
            }
        };
        let replicas = (spec.replicas.unwrap_or(1) as usize).min(left);
        spec.replicas = Some(replicas as u32);
        specs.push(spec);
        left -= replicas;
        i += 1;
    }
    specs
}

fn spread() -> pb::Placement {
    pb::Placement {
        spreads: vec![pb::Spread {
            attribute: "node.labels.zone".into(),
        }],
        ..Default::default()
    }
}

fn base(name: String, replicas: usize, cpus: &str, memory: &str) -> pb::ServiceSpec {
    pb::ServiceSpec {
        name,
        image: "registry.example.com/team/app:1.0".into(),
        replicas: Some(replicas as u32),
        resources: (!cpus.is_empty()).then(|| pb::Resources {
            cpu_reservation: cpus.into(),
            memory_reservation: memory.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
