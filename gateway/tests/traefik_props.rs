//! Properties of the renderer over random label sets, allocation states and node
//! states: the document is JSON, deterministic, has no empty object outside the
//! allowed ones, validates against the schema of its Traefik major (when `../shared`
//! is there), and never holds a server of an allocation that may not take traffic.

mod traefik_support;

use constellation_gateway::traefik::{RenderOptions, Renderer, TraefikVersion};
use constellation_gateway::view::{Lists, View};
use constellation_proto::v1 as pb;
use proptest::prelude::*;
use std::collections::BTreeSet;
use traefik_support::*;

/// Label keys (with `{}` for a name) and the values tried for each: valid ones and a
/// few that must be refused.
const VOCABULARY: &[(&str, &[&str])] = &[
    ("traefik.enable", &["true", "false", "yes"]),
    (
        "traefik.http.routers.{}.rule",
        &["Host(`a.example`)", "PathPrefix(`/x`)", ""],
    ),
    (
        "traefik.http.routers.{}.service",
        &["a", "b", "api@internal"],
    ),
    (
        "traefik.http.routers.{}.entrypoints",
        &["web", "web,websecure", ","],
    ),
    ("traefik.http.routers.{}.middlewares", &["a", "a,b"]),
    ("traefik.http.routers.{}.priority", &["1", "100", "x"]),
    ("traefik.http.routers.{}.tls", &["true", "false"]),
    ("traefik.http.routers.{}.tls.certresolver", &["le"]),
    (
        "traefik.http.routers.{}.tls.domains[0].main",
        &["example.com"],
    ),
    ("traefik.http.routers.{}.rulesyntax", &["v3"]),
    (
        "traefik.http.services.{}.loadbalancer.server.port",
        &["8080", "9090", "70000"],
    ),
    (
        "traefik.http.services.{}.loadbalancer.server.scheme",
        &["http", "https", "gopher"],
    ),
    (
        "traefik.http.services.{}.loadbalancer.server.weight",
        &["1", "5"],
    ),
    (
        "traefik.http.services.{}.loadbalancer.passhostheader",
        &["true", "0"],
    ),
    (
        "traefik.http.services.{}.loadbalancer.healthcheck.path",
        &["/health"],
    ),
    (
        "traefik.http.services.{}.loadbalancer.healthcheck.interval",
        &["10s", "soon"],
    ),
    (
        "traefik.http.services.{}.loadbalancer.sticky",
        &["true", "false"],
    ),
    (
        "traefik.http.services.{}.loadbalancer.sticky.cookie",
        &["true", "false"],
    ),
    (
        "traefik.http.services.{}.loadbalancer.sticky.cookie.name",
        &["sid"],
    ),
    (
        "traefik.http.middlewares.{}.stripprefix.prefixes",
        &["/a", "/a,/b"],
    ),
    ("traefik.http.middlewares.{}.addprefix.prefix", &["/p"]),
    (
        "traefik.http.middlewares.{}.headers.customrequestheaders.X-A",
        &["1"],
    ),
    ("traefik.http.middlewares.{}.headers.framedeny", &["true"]),
    (
        "traefik.http.middlewares.{}.redirectscheme.scheme",
        &["https"],
    ),
    ("traefik.http.middlewares.{}.basicauth.users", &["u:h"]),
    ("traefik.http.middlewares.{}.ratelimit.average", &["10"]),
    (
        "traefik.http.middlewares.{}.ratelimit.sourcecriterion.ipstrategy",
        &["true", "false"],
    ),
    (
        "traefik.http.middlewares.{}.ipallowlist.sourcerange",
        &["10.0.0.0/8"],
    ),
    (
        "traefik.http.middlewares.{}.ipallowlist.ipstrategy",
        &["true", "false"],
    ),
    ("traefik.http.middlewares.{}.compress", &["true", "false"]),
    ("traefik.http.middlewares.{}.retry.attempts", &["3"]),
    ("traefik.http.middlewares.{}.chain.middlewares", &["a,b"]),
    ("traefik.http.middlewares.{}.nosuch", &["1"]),
    ("traefik.tcp.routers.{}.rule", &["HostSNI(`*`)"]),
    ("traefik.tcp.routers.{}.tls", &["true"]),
    ("traefik.tcp.routers.{}.tls.passthrough", &["true"]),
    ("traefik.tcp.routers.{}.entrypoints", &["pg"]),
    (
        "traefik.tcp.services.{}.loadbalancer.server.port",
        &["5432", "8080"],
    ),
    ("traefik.udp.routers.{}.entrypoints", &["dns"]),
    ("traefik.udp.services.{}.loadbalancer.server.port", &["53"]),
];

const NAMES: &[&str] = &["a", "b", "Web"];
const NODES: &[&str] = &["n1", "n2", "n3"];

/// Mostly enabled services with mostly valid values (the first of each list), so that
/// most documents route something and some services are refused.
fn labels() -> impl Strategy<Value = Vec<(String, String)>> {
    let value = prop_oneof![4 => Just(0usize), 1 => 0usize..3];
    (
        prop::bool::weighted(0.8),
        prop::collection::vec((0..VOCABULARY.len(), 0..NAMES.len(), value), 0..6),
    )
        .prop_map(|(enable, picks)| {
            let mut labels: Vec<(String, String)> = picks
                .into_iter()
                .map(|(key, name, value)| {
                    let (template, values) = VOCABULARY[key];
                    (
                        template.replace("{}", NAMES[name]),
                        values[value % values.len()].to_owned(),
                    )
                })
                .collect();
            if enable {
                labels.insert(0, ("traefik.enable".into(), "true".into()));
            }
            labels
        })
}

#[derive(Debug, Clone)]
struct Alloc {
    service: usize,
    node: usize,
    state: pb::AllocationState,
    health: pb::HealthState,
    stop: bool,
}

fn alloc() -> impl Strategy<Value = Alloc> {
    (
        0usize..4,
        0..NODES.len() + 1,
        prop_oneof![
            10 => Just(pb::AllocationState::Running),
            1 => Just(pb::AllocationState::Starting),
            1 => Just(pb::AllocationState::Exited),
            1 => Just(pb::AllocationState::Lost),
        ],
        prop_oneof![
            8 => Just(pb::HealthState::Healthy),
            1 => Just(pb::HealthState::None),
            1 => Just(pb::HealthState::Unhealthy),
            1 => Just(pb::HealthState::Starting),
            1 => Just(pb::HealthState::Unspecified),
        ],
        prop::bool::weighted(0.1),
    )
        .prop_map(|(service, node, state, health, stop)| Alloc {
            service,
            node,
            state,
            health,
            stop,
        })
}

fn node_state() -> impl Strategy<Value = (pb::NodeStatus, pb::NodeAvailability)> {
    (
        prop_oneof![
            8 => Just(pb::NodeStatus::Ready),
            1 => Just(pb::NodeStatus::Down),
            1 => Just(pb::NodeStatus::Unknown),
        ],
        prop_oneof![
            8 => Just(pb::NodeAvailability::Active),
            1 => Just(pb::NodeAvailability::Cordoned),
            1 => Just(pb::NodeAvailability::Draining),
        ],
    )
}

/// Builds the state; returns it with the addresses of the allocations that may take
/// traffic, decided here independently of the renderer.
fn build(
    services: &[Vec<(String, String)>],
    nodes: &[(pb::NodeStatus, pb::NodeAvailability)],
    allocs: &[Alloc],
) -> (State, BTreeSet<String>) {
    let mut state = State::default();
    for (i, name) in NODES.iter().enumerate() {
        let node = state.node(name, &format!("10.0.0.{}", i + 1));
        node.status = nodes[i].0 as i32;
        node.availability = nodes[i].1 as i32;
    }
    for (i, labels) in services.iter().enumerate() {
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        state.service_with_ports(
            &format!("svc{i}"),
            &labels,
            &[
                (8080, pb::Protocol::Tcp),
                (5432, pb::Protocol::Tcp),
                (53, pb::Protocol::Udp),
            ],
        );
    }
    let mut routable = BTreeSet::new();
    for (i, a) in allocs.iter().enumerate() {
        let service = format!("svc{}", a.service % services.len());
        let node_name = NODES.get(a.node).copied().unwrap_or("ghost");
        let port = 20000 + 10 * i as u32;
        let allocation = state.alloc(&format!("alloc{i:03}"), &service, node_name, port);
        set_state(allocation, a.state);
        set_health(allocation, a.health);
        if a.stop {
            allocation.desired_state = pb::AllocationDesiredState::Stop as i32;
        }
        let node_ok = nodes.get(a.node).is_some_and(|(status, availability)| {
            *status != pb::NodeStatus::Down && *availability == pb::NodeAvailability::Active
        });
        let alloc_ok = a.state == pb::AllocationState::Running
            && matches!(a.health, pb::HealthState::Healthy | pb::HealthState::None)
            && !a.stop;
        if node_ok && alloc_ok {
            for offset in 0..3 {
                routable.insert(format!("10.0.0.{}:{}", a.node + 1, port + offset));
            }
        }
    }
    (state, routable)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn documents_are_valid_deterministic_and_route_only_to_routable_allocations(
        services in prop::collection::vec(labels(), 1..5),
        nodes in prop::collection::vec(node_state(), NODES.len()),
        allocs in prop::collection::vec(alloc(), 0..16),
        v2 in any::<bool>(),
        exposed_by_default in any::<bool>(),
    ) {
        let (state, routable) = build(&services, &nodes, &allocs);
        let version = if v2 { TraefikVersion::V2 } else { TraefikVersion::V3 };
        let opts = RenderOptions { version, exposed_by_default, default_domain: Some("example.com".into()) };
        let rendered = state.render(&opts);
        let doc: serde_json::Value = serde_json::from_slice(&rendered.json).expect("JSON");
        prop_assert_eq!(&rendered.json, &state.render(&opts).json, "deterministic");
        prop_assert_eq!(empty_objects(&doc), Vec::<String>::new(), "{}", doc);
        for address in server_addresses(&doc) {
            prop_assert!(routable.contains(&address), "{} is not routable in {}", address, doc);
        }
        if let Some(validator) = schema(version) {
            prop_assert_eq!(schema_errors(validator, &doc), Vec::<String>::new(), "{:#}", doc);
        }
    }
}

/// One change to the cluster between two renders.
#[derive(Debug, Clone)]
enum Change {
    Health(usize, pb::HealthState),
    Node(usize, (pb::NodeStatus, pb::NodeAvailability)),
    Labels(usize, Vec<(String, String)>),
    Port(usize, u32),
    Remove(usize),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (
            0usize..16,
            prop_oneof![
                Just(pb::HealthState::Healthy),
                Just(pb::HealthState::Unhealthy)
            ]
        )
            .prop_map(|(a, h)| Change::Health(a, h)),
        (0..NODES.len(), node_state()).prop_map(|(n, s)| Change::Node(n, s)),
        (0usize..5, labels()).prop_map(|(s, l)| Change::Labels(s, l)),
        (0usize..16, 30000u32..30010).prop_map(|(a, p)| Change::Port(a, p)),
        (0usize..5).prop_map(Change::Remove),
    ]
}

fn apply(state: &mut State, change: &Change) {
    match change {
        Change::Health(i, health) => {
            if let Some(a) = state.allocations.values_mut().nth(*i) {
                set_health(a, *health);
            }
        }
        Change::Node(i, (status, availability)) => {
            let node = state.nodes.get_mut(NODES[*i]).unwrap();
            node.status = *status as i32;
            node.availability = *availability as i32;
        }
        Change::Labels(i, labels) => {
            if let Some(service) = state.services.values_mut().nth(*i) {
                service.spec.as_mut().unwrap().labels = labels.iter().cloned().collect();
            }
        }
        Change::Port(i, port) => {
            if let Some(a) = state.allocations.values_mut().nth(*i)
                && let Some(e) = a.status.as_mut().unwrap().endpoints.first_mut()
            {
                e.host_port = *port;
            }
        }
        Change::Remove(i) => {
            if let Some(name) = state.services.keys().nth(*i).cloned() {
                state.services.remove(&name);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The renderer that keeps each service's part between renders says exactly what a
    /// fresh render of the same state says, after any sequence of changes.
    #[test]
    fn the_incremental_renderer_matches_a_fresh_render(
        services in prop::collection::vec(labels(), 1..5),
        nodes in prop::collection::vec(node_state(), NODES.len()),
        allocs in prop::collection::vec(alloc(), 0..16),
        changes in prop::collection::vec(change(), 1..12),
        v2 in any::<bool>(),
    ) {
        let (mut state, _) = build(&services, &nodes, &allocs);
        let version = if v2 { TraefikVersion::V2 } else { TraefikVersion::V3 };
        let opts = RenderOptions { version, ..RenderOptions::default() };
        let mut renderer = Renderer::new(opts.clone());
        for change in &changes {
            let kept = renderer.render(&state.services, &state.nodes, &state.allocations);
            let fresh = state.render(&opts);
            prop_assert_eq!(&kept.json, &fresh.json);
            prop_assert_eq!(&kept.errors, &fresh.errors);
            prop_assert_eq!(&kept.parts, &fresh.parts);
            apply(&mut state, change);
        }
    }
}

/// The events that take a view of `before` to `after`: each changed object whole, as
/// the control plane's Watch stream carries it.
fn events_between(before: &State, after: &State, index: &mut u64) -> Vec<pb::Event> {
    use pb::event::Payload;
    fn kind<T: PartialEq>(old: Option<&T>, new: Option<&T>) -> Option<pb::ChangeKind> {
        match (old, new) {
            (None, Some(_)) => Some(pb::ChangeKind::Created),
            (Some(_), None) => Some(pb::ChangeKind::Deleted),
            (Some(a), Some(b)) if a != b => Some(pb::ChangeKind::Updated),
            _ => None,
        }
    }
    fn keys<'a, V>(
        a: &'a std::collections::BTreeMap<String, V>,
        b: &'a std::collections::BTreeMap<String, V>,
    ) -> BTreeSet<&'a String> {
        a.keys().chain(b.keys()).collect()
    }
    let mut events = Vec::new();
    let mut push = |payload: Payload| {
        *index += 1;
        events.push(pb::Event {
            index: *index,
            time: None,
            payload: Some(payload),
        });
    };
    for name in keys(&before.nodes, &after.nodes) {
        let (old, new) = (before.nodes.get(name), after.nodes.get(name));
        if let Some(k) = kind(old, new) {
            push(Payload::Node(pb::NodeEvent {
                kind: k as i32,
                node: new.or(old).cloned(),
            }));
        }
    }
    for name in keys(&before.services, &after.services) {
        let (old, new) = (before.services.get(name), after.services.get(name));
        if let Some(k) = kind(old, new) {
            push(Payload::Service(pb::ServiceEvent {
                kind: k as i32,
                service: new.or(old).cloned(),
            }));
        }
    }
    for id in keys(&before.allocations, &after.allocations) {
        let (old, new) = (before.allocations.get(id), after.allocations.get(id));
        let Some(k) = kind(old, new) else { continue };
        // A health-only change comes as a health event half of the time (the view
        // must take it alone too), else as the whole allocation.
        let health_only = old.zip(new).is_some_and(|(o, n)| {
            let mut o = o.clone();
            if let (Some(os), Some(ns)) = (o.status.as_mut(), n.status.as_ref()) {
                os.health = ns.health;
            }
            &o == n
        });
        if health_only && id.ends_with(['0', '2', '4', '6', '8']) {
            let n = new.unwrap();
            push(Payload::Health(pb::HealthEvent {
                allocation_id: n.id.clone(),
                service_name: n.service_name.clone(),
                node_name: n.node_name.clone(),
                previous: old.unwrap().status.as_ref().unwrap().health,
                current: n.status.as_ref().unwrap().health,
            }));
        } else {
            push(Payload::Allocation(pb::AllocationEvent {
                kind: k as i32,
                allocation: new.or(old).cloned(),
            }));
        }
    }
    events
}

fn view_of(state: &State, index: u64) -> View {
    View::from_lists(Lists {
        services: pb::ListServicesResponse {
            services: state.services.values().cloned().collect(),
            index,
        },
        nodes: pb::ListNodesResponse {
            nodes: state.nodes.values().cloned().collect(),
            index,
        },
        allocations: pb::ListAllocationsResponse {
            allocations: state.allocations.values().cloned().collect(),
            index,
        },
        ..Lists::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Fed the view the gateway keeps (events applied one by one, renders at random
    /// points in between), the renderer looks only at the services the view's journal
    /// names, and says exactly what a fresh render of the same state says.
    #[test]
    fn rendering_only_the_services_the_view_journal_names_matches_a_fresh_render(
        services in prop::collection::vec(labels(), 1..5),
        nodes in prop::collection::vec(node_state(), NODES.len()),
        allocs in prop::collection::vec(alloc(), 0..16),
        changes in prop::collection::vec((change(), any::<bool>()), 1..16),
        v2 in any::<bool>(),
    ) {
        let (mut state, _) = build(&services, &nodes, &allocs);
        let version = if v2 { TraefikVersion::V2 } else { TraefikVersion::V3 };
        let opts = RenderOptions { version, ..RenderOptions::default() };
        let mut index = 1;
        let mut view = view_of(&state, index);
        let mut renderer = Renderer::new(opts.clone());
        let first = renderer.render_view(&view);
        prop_assert_eq!(&first.json, &state.render(&opts).json);
        for (change, render_now) in &changes {
            let before = state.clone();
            apply(&mut state, change);
            for event in events_between(&before, &state, &mut index) {
                view.apply(&event);
            }
            if *render_now {
                let kept = renderer.render_view(&view);
                let fresh = state.render(&opts);
                prop_assert_eq!(&kept.json, &fresh.json);
                prop_assert_eq!(&kept.errors, &fresh.errors);
                prop_assert_eq!(&kept.parts, &fresh.parts);
            }
        }
        let kept = renderer.render_view(&view);
        prop_assert_eq!(&kept.json, &state.render(&opts).json);
    }
}
