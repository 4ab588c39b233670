//! The view's pure part: built from lists, moved by events. The property: whatever the
//! event sequence and wherever the lists were taken (even each collection at its own
//! index), listing then applying the rest equals listing at the end.

use super::*;
use constellation_proto::v1::{
    AllocationEvent, AllocationState, AllocationStatus, HealthEvent, LeadershipEvent, LeaseEvent,
    Member, MigrationEvent, NodeDescription, NodeEvent, ServiceEvent, ServiceSpec,
};
use proptest::prelude::*;

fn service(name: &str, version: u64) -> Service {
    Service {
        spec: Some(ServiceSpec {
            name: name.into(),
            image: "busybox".into(),
            ..Default::default()
        }),
        version,
        ..Default::default()
    }
}

fn node(id: &str, name: &str, priority: i32) -> Node {
    Node {
        id: id.into(),
        description: Some(NodeDescription {
            name: name.into(),
            priority,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn alloc(id: &str, service: &str, health: HealthState) -> Allocation {
    Allocation {
        id: id.into(),
        service_name: service.into(),
        node_id: "n0".into(),
        node_name: "node-0".into(),
        status: Some(AllocationStatus {
            state: AllocationState::Running as i32,
            health: health as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn event(index: u64, payload: Payload) -> Event {
    Event {
        index,
        time: None,
        payload: Some(payload),
    }
}

fn kind(deleted: bool, existed: bool) -> i32 {
    match (deleted, existed) {
        (true, _) => ChangeKind::Deleted as i32,
        (false, true) => ChangeKind::Updated as i32,
        (false, false) => ChangeKind::Created as i32,
    }
}

#[test]
fn events_put_and_remove_whole_objects() {
    let mut view = View::default();
    view.apply(&event(
        1,
        Payload::Service(ServiceEvent {
            kind: ChangeKind::Created as i32,
            service: Some(service("web", 1)),
        }),
    ));
    view.apply(&event(
        2,
        Payload::Allocation(AllocationEvent {
            kind: ChangeKind::Created as i32,
            allocation: Some(alloc("a1", "web", HealthState::Starting)),
        }),
    ));
    view.apply(&event(
        3,
        Payload::Health(HealthEvent {
            allocation_id: "a1".into(),
            service_name: "web".into(),
            node_name: "node-0".into(),
            previous: HealthState::Starting as i32,
            current: HealthState::Healthy as i32,
        }),
    ));
    assert_eq!(view.index(), 3);
    assert_eq!(view.services()["web"].version, 1);
    assert!(allocation_healthy(&view.allocations()["a1"]));
    assert_eq!(view.allocations_of_service("web").count(), 1);

    view.apply(&event(
        4,
        Payload::Service(ServiceEvent {
            kind: ChangeKind::Deleted as i32,
            service: Some(service("web", 1)),
        }),
    ));
    assert!(view.service("web").is_none());
    assert_eq!(view.index(), 4);
}

#[test]
fn a_renamed_node_leaves_no_entry_under_its_old_name() {
    let mut view = View::default();
    for (index, name) in [(1, "old"), (2, "new")] {
        view.apply(&event(
            index,
            Payload::Node(NodeEvent {
                kind: ChangeKind::Updated as i32,
                node: Some(node("id-1", name, 0)),
            }),
        ));
    }
    assert_eq!(view.nodes().keys().collect::<Vec<_>>(), ["new"]);
}

#[test]
fn the_index_never_moves_back_and_heartbeats_advance_it() {
    let mut view = View::default();
    view.advance_to(10);
    view.apply(&event(
        5,
        Payload::Leadership(LeadershipEvent {
            leader_id: 1,
            leader_api_addr: "a:1".into(),
            term: 2,
        }),
    ));
    assert_eq!(view.index(), 10);
    assert_eq!(view.leader().unwrap().api_addr, "a:1");
}

#[test]
fn cluster_status_names_the_leader_unless_an_event_knew_a_newer_term() {
    let mut view = View::default();
    view.apply(&event(
        1,
        Payload::Leadership(LeadershipEvent {
            leader_id: 2,
            leader_api_addr: "b:1".into(),
            term: 7,
        }),
    ));
    let status = |leader: u64, term: u64| ClusterStatusResponse {
        leader_id: Some(leader),
        term,
        members: vec![
            Member {
                id: 1,
                api_addr: "a:1".into(),
                ..Default::default()
            },
            Member {
                id: 2,
                api_addr: "b:1".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    view.set_cluster(status(1, 6));
    assert_eq!(view.leader().unwrap().id, 2, "an older term does not win");
    view.set_cluster(status(1, 8));
    assert_eq!(
        view.leader(),
        Some(&Leader {
            id: 1,
            api_addr: "a:1".into(),
            term: 8
        })
    );
}

#[test]
fn snapshot_freshness_follows_sync_and_the_stale_bound() {
    let bound = Duration::from_secs(5);
    let mut snap = Snapshot::initial(bound);
    assert!(!snap.is_fresh(), "never synced");
    snap.synced = true;
    snap.lost_since = None;
    assert!(snap.is_fresh());
    let lost = Instant::now();
    snap.lost_since = Some(lost);
    assert!(snap.is_fresh_at(lost + Duration::from_secs(4)));
    assert!(!snap.is_fresh_at(lost + Duration::from_secs(6)));
}

#[test]
fn lists_start_the_view_at_their_smallest_index() {
    let lists = Lists {
        services: ListServicesResponse {
            services: vec![service("web", 3)],
            index: 9,
        },
        nodes: ListNodesResponse {
            nodes: vec![node("id", "n", 1)],
            index: 7,
        },
        ..Default::default()
    };
    assert_eq!(lists.max_index(), 9);
    // Missing lists count as index 0 here: they were not taken.
    let view = View::from_lists(lists);
    assert_eq!(view.index(), 0);
    assert_eq!(view.nodes()["n"].description.as_ref().unwrap().priority, 1);
}

// ---- the property ----

/// One change in the generated history; names come from small sets so objects are
/// created, updated and deleted many times.
#[derive(Debug, Clone)]
enum Change {
    Service {
        name: u8,
        deleted: bool,
    },
    Node {
        id: u8,
        generation: u8,
        deleted: bool,
    },
    Alloc {
        id: u8,
        service: u8,
        health: u8,
        deleted: bool,
    },
    Health {
        id: u8,
        health: u8,
    },
    Lease {
        name: u8,
        deleted: bool,
    },
    Migration {
        id: u8,
        deleted: bool,
    },
    Leadership {
        leader: u8,
    },
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0u8..4, any::<bool>()).prop_map(|(name, deleted)| Change::Service { name, deleted }),
        (0u8..3, 0u8..2, prop::bool::weighted(0.2)).prop_map(|(id, generation, deleted)| {
            Change::Node {
                id,
                generation,
                deleted,
            }
        }),
        (0u8..6, 0u8..4, 0u8..5, prop::bool::weighted(0.3)).prop_map(
            |(id, service, health, deleted)| Change::Alloc {
                id,
                service,
                health,
                deleted
            }
        ),
        (0u8..6, 0u8..5).prop_map(|(id, health)| Change::Health { id, health }),
        (0u8..3, any::<bool>()).prop_map(|(name, deleted)| Change::Lease { name, deleted }),
        (0u8..3, prop::bool::weighted(0.2))
            .prop_map(|(id, deleted)| Change::Migration { id, deleted }),
        (1u8..4).prop_map(|leader| Change::Leadership { leader }),
    ]
}

fn health(h: u8) -> HealthState {
    HealthState::try_from(i32::from(h)).unwrap_or(HealthState::Unspecified)
}

/// The cluster as a plain model: what `List*` would answer after some prefix of the
/// history. Written independently of `View::apply` (keyed by id, rebuilt per prefix).
#[derive(Debug, Clone, Default)]
struct Model {
    services: BTreeMap<String, Service>,
    nodes_by_id: BTreeMap<String, Node>,
    allocations: BTreeMap<String, Allocation>,
    leases: BTreeMap<String, Lease>,
    migrations: BTreeMap<String, Migration>,
    leader: Option<Leader>,
}

/// Turns changes into events (index = position + 1) and the model after each prefix
/// (`models[k]` is the state after `k` events).
fn history(changes: &[Change]) -> (Vec<Event>, Vec<Model>) {
    let mut model = Model::default();
    let mut models = vec![model.clone()];
    let mut events = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let index = i as u64 + 1;
        let payload = match change {
            Change::Service { name, deleted } => {
                let name = format!("svc-{name}");
                let existed = model.services.contains_key(&name);
                let s = service(&name, index);
                if *deleted {
                    model.services.remove(&name);
                } else {
                    model.services.insert(name, s.clone());
                }
                Payload::Service(ServiceEvent {
                    kind: kind(*deleted, existed),
                    service: Some(s),
                })
            }
            Change::Node {
                id,
                generation,
                deleted,
            } => {
                let id = format!("id-{id}");
                let existed = model.nodes_by_id.contains_key(&id);
                let n = node(&id, &format!("node-{id}-{generation}"), index as i32);
                if *deleted {
                    model.nodes_by_id.remove(&id);
                } else {
                    model.nodes_by_id.insert(id, n.clone());
                }
                Payload::Node(NodeEvent {
                    kind: kind(*deleted, existed),
                    node: Some(n),
                })
            }
            Change::Alloc {
                id,
                service,
                health: h,
                deleted,
            } => {
                let id = format!("alloc-{id}");
                let existed = model.allocations.contains_key(&id);
                let mut a = alloc(&id, &format!("svc-{service}"), health(*h));
                a.slot = index as u32;
                if *deleted {
                    model.allocations.remove(&id);
                } else {
                    model.allocations.insert(id, a.clone());
                }
                Payload::Allocation(AllocationEvent {
                    kind: kind(*deleted, existed),
                    allocation: Some(a),
                })
            }
            Change::Health { id, health: h } => {
                let id = format!("alloc-{id}");
                let previous = model
                    .allocations
                    .get(&id)
                    .and_then(|a| a.status.as_ref())
                    .map_or(0, |s| s.health);
                if let Some(status) = model
                    .allocations
                    .get_mut(&id)
                    .and_then(|a| a.status.as_mut())
                {
                    status.health = health(*h) as i32;
                }
                Payload::Health(HealthEvent {
                    allocation_id: id,
                    service_name: String::new(),
                    node_name: String::new(),
                    previous,
                    current: health(*h) as i32,
                })
            }
            Change::Lease { name, deleted } => {
                let name = format!("lease-{name}");
                let existed = model.leases.contains_key(&name);
                let l = Lease {
                    name: name.clone(),
                    holder: "h".into(),
                    fencing_token: index,
                    ..Default::default()
                };
                if *deleted {
                    model.leases.remove(&name);
                } else {
                    model.leases.insert(name, l.clone());
                }
                Payload::Lease(LeaseEvent {
                    kind: kind(*deleted, existed),
                    lease: Some(l),
                })
            }
            Change::Migration { id, deleted } => {
                let id = format!("mig-{id}");
                let existed = model.migrations.contains_key(&id);
                let m = Migration {
                    id: id.clone(),
                    service_name: "svc-0".into(),
                    bytes_moved: index,
                    ..Default::default()
                };
                if *deleted {
                    model.migrations.remove(&id);
                } else {
                    model.migrations.insert(id, m.clone());
                }
                Payload::Migration(MigrationEvent {
                    kind: kind(*deleted, existed),
                    migration: Some(m),
                })
            }
            Change::Leadership { leader } => {
                let l = Leader {
                    id: u64::from(*leader),
                    api_addr: format!("member-{leader}:7400"),
                    term: index,
                };
                model.leader = Some(l.clone());
                Payload::Leadership(LeadershipEvent {
                    leader_id: l.id,
                    leader_api_addr: l.api_addr,
                    term: l.term,
                })
            }
        };
        events.push(event(index, payload));
        models.push(model.clone());
    }
    (events, models)
}

/// What the control plane's lists would answer, each collection taken after the
/// number of events given in `at` (services, nodes, allocations, leases, migrations,
/// status).
fn lists(models: &[Model], at: [usize; 6]) -> Lists {
    let m = |k: usize| &models[k];
    let status = match &m(at[5]).leader {
        Some(l) => ClusterStatusResponse {
            leader_id: Some(l.id),
            term: l.term,
            members: vec![Member {
                id: l.id,
                api_addr: l.api_addr.clone(),
                ..Default::default()
            }],
            ..Default::default()
        },
        None => ClusterStatusResponse::default(),
    };
    let status = ClusterStatusResponse {
        event_index: at[5] as u64,
        ..status
    };
    Lists {
        services: ListServicesResponse {
            services: m(at[0]).services.values().cloned().collect(),
            index: at[0] as u64,
        },
        nodes: ListNodesResponse {
            nodes: m(at[1]).nodes_by_id.values().cloned().collect(),
            index: at[1] as u64,
        },
        allocations: ListAllocationsResponse {
            allocations: m(at[2]).allocations.values().cloned().collect(),
            index: at[2] as u64,
        },
        leases: ListLeasesResponse {
            leases: m(at[3]).leases.values().cloned().collect(),
            index: at[3] as u64,
        },
        migrations: ListMigrationsResponse {
            migrations: m(at[4]).migrations.values().cloned().collect(),
            index: at[4] as u64,
        },
        status,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Lists taken after `k` events, then the remaining events applied, equal lists
    /// taken at the end.
    #[test]
    fn applying_events_equals_relisting(
        changes in prop::collection::vec(change(), 0..60),
        split in any::<prop::sample::Index>(),
    ) {
        let (events, models) = history(&changes);
        let n = events.len();
        let k = split.index(n + 1);
        let mut moved = View::from_lists(lists(&models, [k; 6]));
        for e in &events[k..] {
            moved.apply(e);
        }
        let relisted = View::from_lists(lists(&models, [n; 6]));
        prop_assert_eq!(moved.without_cluster(), relisted.without_cluster());
        prop_assert_eq!(moved.index(), n as u64);
    }

    /// Each collection listed at its own index, then every event from the smallest
    /// index on replayed (some of them already reflected by a list): the same view.
    #[test]
    fn replaying_from_the_smallest_list_index_converges(
        changes in prop::collection::vec(change(), 1..60),
        at in prop::array::uniform6(any::<prop::sample::Index>()),
    ) {
        let (events, models) = history(&changes);
        let n = events.len();
        let at = at.map(|i| i.index(n + 1));
        let listed = lists(&models, at);
        let from = listed.min_index() as usize;
        let mut moved = View::from_lists(listed);
        prop_assert_eq!(moved.index(), from as u64);
        for e in &events[from..] {
            moved.apply(e);
        }
        let relisted = View::from_lists(lists(&models, [n; 6]));
        prop_assert_eq!(moved.without_cluster(), relisted.without_cluster());
    }
}

/// The feed's two copies hold what one view moved by the same changes holds, whoever
/// keeps which published snapshot, and with only the channel holding the latest
/// snapshot they alternate between two allocations (no copy per change).
#[test]
fn two_copies_hold_the_same_view_as_one_and_stop_copying_once_readers_let_go() {
    use super::feed::{Change, TwoCopies};
    let mut reference = View::default();
    let mut two = TwoCopies::new(View::default());
    let mut channel = Arc::clone(two.current());
    let mut held = Vec::new();
    let mut pointers = std::collections::BTreeSet::new();
    for i in 1..=60u64 {
        let name = format!("s{}", i % 7);
        let change = if i % 11 == 0 {
            Change::Cluster(ClusterStatusResponse {
                id: i,
                ..Default::default()
            })
        } else {
            Change::Events(Arc::new(constellation_proto::v1::WatchResponse {
                events: vec![
                    event(
                        i,
                        Payload::Service(ServiceEvent {
                            kind: ChangeKind::Created as i32,
                            service: Some(service(&name, i)),
                        }),
                    ),
                    event(
                        i,
                        Payload::Allocation(AllocationEvent {
                            kind: ChangeKind::Created as i32,
                            allocation: Some(alloc(
                                &format!("a{}", i % 5),
                                &name,
                                HealthState::Healthy,
                            )),
                        }),
                    ),
                ],
                last_index: i,
            }))
        };
        match &change {
            Change::Events(r) => {
                for e in &r.events {
                    reference.apply(e);
                }
                reference.advance_to(r.last_index);
            }
            Change::Cluster(c) => reference.set_cluster(c.clone()),
        }
        two.change(change);
        assert_eq!(**two.current(), reference, "after change {i}");
        // Readers: the first 20 changes some snapshots are kept a while.
        if i < 20 && i % 3 == 0 {
            held.push(Arc::clone(two.current()));
        }
        if i == 20 {
            held.clear();
        }
        channel = Arc::clone(two.current());
        if i > 40 {
            pointers.insert(Arc::as_ptr(&channel) as usize);
        }
    }
    drop(channel);
    assert_eq!(pointers.len(), 2, "alternates between two copies");
    assert_eq!(
        two.current().mark(),
        reference.mark(),
        "same journal position"
    );
}
