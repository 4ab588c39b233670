//! The pure renderer: cluster state in, Traefik dynamic configuration (JSON bytes) out.
//!
//! It follows Traefik's Docker provider, with one Constellation service in the role of
//! one container (every replica carries the same labels):
//! - a service takes part when `traefik.enable=true`, or when it has no such label and
//!   [`RenderOptions::exposed_by_default`] is set; it contributes nothing while none of
//!   its allocations is routable, as Traefik leaves out stopped and unhealthy containers;
//! - TCP and UDP: declared routers and services; a missing service is created under the
//!   service's name; a TCP router needs a rule; a router without a service links to the
//!   only service. With TCP or UDP labels and no HTTP labels, no HTTP defaults follow;
//! - HTTP: a missing service is created under the service's name; with no router and one
//!   service, a router named after the service with the default rule `Host(`name`)`
//!   (or `Host(`name.<domain>`)` with a default domain) is created, and a router without
//!   a rule gets that default rule; a router without a service links to the only service;
//! - servers: one per routable allocation, at the reachable address of its endpoint for
//!   the `server.port` label (a container port), or for the lowest published port of
//!   the protocol, with the `server` template's other fields;
//! - names shared by several services: identical routers and middlewares are kept once,
//!   load balancers identical apart from their servers merge their servers, anything
//!   else is a conflict and is left out with an error;
//! - a load balancer with no server is left out, with the routers that point to it:
//!   Traefik would reject a service without servers, and a router to a missing service
//!   only produces errors there.
//!
//! A service whose labels hold an error (unknown key, bad value, no usable port, a
//! middleware with two types) contributes nothing and the error is reported in
//! [`Rendered::errors`]; the rest of the document is unaffected.
//!
//! Routable allocation: desired to run, RUNNING, health HEALTHY or NONE (no health
//! check), on a known node that is not DOWN, not cordoned and not draining.
//!
//! The document never holds an empty object apart from those Traefik accepts (router
//! `tls`, `sticky`, `cookie`, `compress`, `ipStrategy`). When nothing at all is routable
//! it is `{}`, which Traefik applies as "no routes": the truth for a cluster with a fresh
//! view and nothing to route (a stale view is answered 503 by the HTTP layer instead).

use super::TraefikVersion;
use super::labels::{self, LabelConfig, Section, Value};
use crate::view::{JournalMark, View};
use constellation_proto::v1 as pb;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    pub version: TraefikVersion,
    /// Services without a `traefik.enable` label take part (Traefik's `exposedByDefault`).
    pub exposed_by_default: bool,
    /// Suffix of the default rule: `Host(`<service>.<domain>`)`.
    pub default_domain: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            version: TraefikVersion::V3,
            exposed_by_default: false,
            default_domain: None,
        }
    }
}

/// Something in the labels that kept part of the configuration out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// The Constellation service whose labels are at fault (several for a conflict).
    pub service: String,
    pub message: String,
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "service {}: {}", self.service, self.message)
    }
}

#[derive(Debug, Clone)]
pub struct Rendered {
    /// The whole document.
    pub json: Vec<u8>,
    /// Where each non-empty map (`http`/`routers`, ...) lies in `json`.
    pub parts: Vec<(Protocol, &'static str, Range<usize>)>,
    pub errors: Vec<RenderError>,
}

/// A protocol section of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Tcp,
    Udp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Http, Protocol::Tcp, Protocol::Udp];

    pub fn key(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    fn carries(self, protocol: pb::Protocol) -> bool {
        match self {
            Protocol::Http | Protocol::Tcp => {
                matches!(protocol, pb::Protocol::Unspecified | pb::Protocol::Tcp)
            }
            Protocol::Udp => protocol == pb::Protocol::Udp,
        }
    }
}

impl Rendered {
    /// One map of the document (`http`/`routers`, `tcp`/`services`, ...) as JSON; `{}`
    /// when the document has none. For the predecessor's read-only routes: these are
    /// maps to look at, not documents for Traefik.
    pub fn part(&self, protocol: Protocol, part: &str) -> Vec<u8> {
        match self.part_range(protocol, part) {
            Some(range) => self.json[range].to_vec(),
            None => b"{}".to_vec(),
        }
    }

    /// Where the map `protocol`/`part` lies in [`Rendered::json`], when it is there.
    pub fn part_range(&self, protocol: Protocol, part: &str) -> Option<Range<usize>> {
        self.parts
            .iter()
            .find(|(p, name, _)| *p == protocol && *name == part)
            .map(|(_, _, range)| range.clone())
    }
}

/// Renders the dynamic configuration for the given state.
pub fn render(
    services: &BTreeMap<String, pb::Service>,
    nodes: &BTreeMap<String, pb::Node>,
    allocations: &BTreeMap<String, pb::Allocation>,
    opts: &RenderOptions,
) -> Rendered {
    Renderer::new(opts.clone()).render(services, nodes, allocations)
}

/// [`render`] with a memory: each service's part of the document is kept with the
/// inputs it was built from (labels, ports, the endpoints and node addresses of its
/// routable allocations) and rebuilt only when they change, so one health change
/// costs one service's rebuild plus the assembly. The output is byte-identical to
/// [`render`]'s for the same state (both assemble the same parts the same way).
///
/// [`Renderer::render_view`] goes further when it renders successive states of one
/// [`View`]: the view's journal names the services the events since the last render
/// touched, and only those are looked at (their allocations through the view's
/// per-service index), so a health change costs that one service and the assembly,
/// not a walk over every service and allocation.
#[derive(Debug, Default)]
pub struct Renderer {
    options: RenderOptions,
    memo: BTreeMap<String, Memo>,
    index: Index,
    /// The point of the view's history the memo reflects, after a `render_view`.
    rendered: Option<JournalMark>,
}

#[derive(Debug)]
struct Memo {
    labels: BTreeMap<String, String>,
    ports: Vec<pb::PortSpec>,
    backends: Vec<BackendKey>,
    part: Option<Arc<Part>>,
}

impl Memo {
    /// Whether the part was built from these inputs.
    fn matches(&self, spec: &pb::ServiceSpec, backends: &[Backend]) -> bool {
        self.labels == spec.labels
            && self.ports == spec.ports
            && self.backends.len() == backends.len()
            && self
                .backends
                .iter()
                .zip(backends)
                .all(|(k, b)| k.matches(b))
    }
}

/// What the servers of a service are made of, per routable allocation.
#[derive(Debug, PartialEq, Eq)]
struct BackendKey {
    endpoints: Vec<pb::Endpoint>,
    advertise_ip: String,
}

impl BackendKey {
    fn of(backend: &Backend) -> Self {
        Self {
            endpoints: backend
                .allocation
                .status
                .as_ref()
                .map(|s| s.endpoints.clone())
                .unwrap_or_default(),
            advertise_ip: advertise_ip(backend.node).to_owned(),
        }
    }

    fn matches(&self, backend: &Backend) -> bool {
        let endpoints = backend
            .allocation
            .status
            .as_ref()
            .map(|s| s.endpoints.as_slice())
            .unwrap_or_default();
        self.endpoints == endpoints && self.advertise_ip == advertise_ip(backend.node)
    }
}

fn advertise_ip(node: &pb::Node) -> &str {
    node.description
        .as_ref()
        .and_then(|d| d.addresses.as_ref())
        .map(|a| a.advertise_ip.as_str())
        .unwrap_or("")
}

impl Renderer {
    pub fn new(options: RenderOptions) -> Self {
        Self {
            options,
            memo: BTreeMap::new(),
            index: BTreeMap::new(),
            rendered: None,
        }
    }

    /// Renders `view`, looking only at the services its journal says changed since the
    /// state this renderer rendered last (everything on the first render, after a
    /// re-list, or when the journal cannot tell). Same bytes as [`render`].
    pub fn render_view(&mut self, view: &View) -> Rendered {
        let Some(touched) = self.rendered.and_then(|mark| view.touched_since(mark)) else {
            let rendered = self.render(view.services(), view.nodes(), view.allocations());
            self.rendered = Some(view.mark());
            return rendered;
        };
        for name in touched {
            let spec = view.service(name).and_then(|s| s.spec.as_ref());
            let Some(spec) = spec else {
                if let Some(memo) = self.memo.remove(name) {
                    self.unindex(name, memo.part.as_ref());
                }
                continue;
            };
            let backends: Vec<Backend> = view
                .allocations_of_service(name)
                .filter_map(|allocation| {
                    let node = view
                        .node_by_id(&allocation.node_id)
                        .or_else(|| view.node(&allocation.node_name))?;
                    is_routable(allocation, node).then_some(Backend { allocation, node })
                })
                .collect();
            if !self
                .memo
                .get(name)
                .is_some_and(|m| m.matches(spec, &backends))
            {
                self.rebuild(name, spec, &backends);
            }
        }
        self.rendered = Some(view.mark());
        self.assemble()
    }

    pub fn options(&self) -> &RenderOptions {
        &self.options
    }

    pub fn render(
        &mut self,
        services: &BTreeMap<String, pb::Service>,
        nodes: &BTreeMap<String, pb::Node>,
        allocations: &BTreeMap<String, pb::Allocation>,
    ) -> Rendered {
        let backends = routable_backends(nodes, allocations);
        let gone: Vec<String> = self
            .memo
            .keys()
            .filter(|name| services.get(*name).is_none_or(|s| s.spec.is_none()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(memo) = self.memo.remove(&name) {
                self.unindex(&name, memo.part.as_ref());
            }
        }
        // Which services changed: the memo and the services walked side by side (both
        // in name order), so unchanged services cost a comparison of their inputs.
        let none: Vec<Backend> = Vec::new();
        let mut changed = Vec::new();
        let mut memo = self.memo.iter().peekable();
        for (name, service) in services {
            let Some(spec) = service.spec.as_ref() else {
                continue;
            };
            let backends = backends.get(name.as_str()).unwrap_or(&none);
            while memo.next_if(|(m, _)| m.as_str() < name.as_str()).is_some() {}
            let unchanged = memo
                .next_if(|(m, _)| *m == name)
                .is_some_and(|(_, memo)| memo.matches(spec, backends));
            if !unchanged {
                changed.push((name, spec, backends));
            }
        }
        for (name, spec, backends) in changed {
            self.rebuild(name, spec, backends);
        }
        // A full walk: a later `render_view` cannot know what this state was.
        self.rendered = None;
        self.assemble()
    }

    /// Rebuilds service `name`'s part from its spec and routable allocations.
    fn rebuild(&mut self, name: &str, spec: &pb::ServiceSpec, backends: &[Backend]) {
        let part = service_part(name, spec, backends, &self.options).map(Arc::new);
        if let Some(old) = self.memo.remove(name) {
            self.unindex(name, old.part.as_ref());
        }
        if let Some(part) = &part {
            self.reindex(name, part);
        }
        self.memo.insert(
            name.to_owned(),
            Memo {
                labels: spec.labels.clone(),
                ports: spec.ports.clone(),
                backends: backends.iter().map(BackendKey::of).collect(),
                part,
            },
        );
    }

    fn assemble(&self) -> Rendered {
        let errors = self.memo.iter().flat_map(|(owner, memo)| {
            memo.part
                .iter()
                .flat_map(|p| p.errors.iter())
                .map(move |message| RenderError {
                    service: owner.clone(),
                    message: message.clone(),
                })
        });
        assemble(errors.collect(), &self.index)
    }

    /// Takes service `owner`'s definitions out of the index.
    fn unindex(&mut self, owner: &str, part: Option<&Arc<Part>>) {
        for fragment in part.iter().flat_map(|p| p.entries.iter()) {
            let key = (fragment.protocol, fragment.kind);
            let Some(names) = self.index.get_mut(&key) else {
                continue;
            };
            if let Some(definitions) = names.get_mut(&fragment.name) {
                definitions.retain(|d| d.owner != owner);
                if definitions.is_empty() {
                    names.remove(&fragment.name);
                }
            }
        }
    }

    /// Adds service `owner`'s definitions to the index, keeping owners in name order.
    fn reindex(&mut self, owner: &str, part: &Arc<Part>) {
        for (entry, fragment) in part.entries.iter().enumerate() {
            let definitions = self
                .index
                .entry((fragment.protocol, fragment.kind))
                .or_default()
                .entry(fragment.name.clone())
                .or_default();
            let at = definitions.partition_point(|d| d.owner.as_str() < owner);
            definitions.insert(
                at,
                Definition {
                    owner: owner.to_owned(),
                    part: Arc::clone(part),
                    entry,
                },
            );
        }
    }
}

/// Every definition of every name, by map; each name's definitions in owner order.
type Index = BTreeMap<(Protocol, Kind), BTreeMap<String, Vec<Definition>>>;

/// One service's definition of a name.
#[derive(Debug)]
struct Definition {
    owner: String,
    part: Arc<Part>,
    entry: usize,
}

impl Definition {
    fn fragment(&self) -> &Fragment {
        &self.part.entries[self.entry]
    }
}

/// One service's part of the document: its routers, services and middlewares, each
/// already serialised, and the errors its labels caused.
#[derive(Debug, Default)]
struct Part {
    entries: Vec<Fragment>,
    errors: Vec<String>,
}

#[derive(Debug)]
struct Fragment {
    protocol: Protocol,
    kind: Kind,
    name: String,
    /// `"name":`, escaped once here rather than at every assembly.
    key: Vec<u8>,
    value: Value,
    json: Vec<u8>,
    /// A router's service.
    service: Option<String>,
}

/// The maps of a protocol section, in the document's (sorted) key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Middlewares,
    Routers,
    Services,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Middlewares => "middlewares",
            Kind::Routers => "routers",
            Kind::Services => "services",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Kind::Middlewares => "middleware",
            Kind::Routers => "router",
            Kind::Services => "service",
        }
    }
}

/// The part of service `name`, or `None` when it takes no part.
fn service_part(
    name: &str,
    spec: &pb::ServiceSpec,
    backends: &[Backend],
    opts: &RenderOptions,
) -> Option<Part> {
    if !opts.exposed_by_default && !labels::has_traefik_labels(&spec.labels) {
        return None;
    }
    let config = match labels::parse(&spec.labels, opts.version) {
        Ok(config) => config,
        Err(errors) => {
            return Some(Part {
                entries: Vec::new(),
                errors: errors.iter().map(ToString::to_string).collect(),
            });
        }
    };
    if !config.enable.unwrap_or(opts.exposed_by_default) || backends.is_empty() {
        return None;
    }
    let mut errors = Vec::new();
    let mut entries = Vec::new();
    match build_service(name, spec, config, backends, opts, &mut errors) {
        Ok(sections) => {
            for (protocol, section) in Protocol::ALL.into_iter().zip(sections) {
                for (kind, map) in [
                    (Kind::Routers, section.routers),
                    (Kind::Services, section.services),
                    (Kind::Middlewares, section.middlewares),
                ] {
                    for (name, mut value) in map {
                        if value.prune() {
                            continue;
                        }
                        let json = serde_json::to_vec(&value).expect("a tree serialises");
                        let mut key = Vec::with_capacity(name.len() + 3);
                        write_key(&mut key, &name);
                        let service = match kind {
                            Kind::Routers => value
                                .as_obj()
                                .and_then(|r| r.get("service"))
                                .and_then(Value::as_str)
                                .map(str::to_owned),
                            _ => None,
                        };
                        entries.push(Fragment {
                            protocol,
                            kind,
                            name,
                            key,
                            value,
                            json,
                            service,
                        });
                    }
                }
            }
        }
        Err(message) => errors.push(message),
    }
    Some(Part { entries, errors })
}

/// One name's definition as it goes into the document, or `None` for a conflict (with
/// its error pushed).
fn resolve<'a>(
    protocol: Protocol,
    kind: Kind,
    name: &str,
    definitions: &'a [Definition],
    errors: &mut Vec<RenderError>,
) -> Option<Cow<'a, [u8]>> {
    let first = definitions[0].fragment();
    if definitions.len() == 1 || definitions.iter().all(|d| d.fragment().json == first.json) {
        return Some(Cow::Borrowed(first.json.as_slice()));
    }
    if kind == Kind::Services
        && definitions
            .iter()
            .all(|d| without_servers(&d.fragment().value) == without_servers(&first.value))
    {
        let mut merged = first.value.clone();
        for d in &definitions[1..] {
            merge_servers(&mut merged, d.fragment().value.clone());
        }
        return Some(Cow::Owned(
            serde_json::to_vec(&merged).expect("a tree serialises"),
        ));
    }
    let owners: Vec<&str> = definitions.iter().map(|d| d.owner.as_str()).collect();
    errors.push(RenderError {
        service: owners.join(","),
        message: format!(
            "{} {} {name:?} is defined differently by services {}; left out",
            protocol.key(),
            kind.singular(),
            owners.join(", ")
        ),
    });
    None
}

/// A name kept in the document (as its serialised `"name":`) and its definition.
type Entry<'a> = (&'a [u8], Cow<'a, [u8]>);

/// Writes the document from the index: one definition per name (shared identical ones
/// once, load balancers identical apart from their servers merged, anything else a
/// conflict), routers only when their service is in the document or another
/// provider's.
fn assemble(mut errors: Vec<RenderError>, index: &Index) -> Rendered {
    let empty = BTreeMap::new();
    let map = |protocol, kind| index.get(&(protocol, kind)).unwrap_or(&empty);
    let size: usize = index
        .values()
        .flat_map(|names| names.iter())
        .map(|(name, defs)| name.len() + defs[0].fragment().json.len() + 4)
        .sum();
    let mut json = Vec::with_capacity(size + 128);
    let mut ranges = Vec::new();
    json.push(b'{');
    let mut first_protocol = true;
    for protocol in Protocol::ALL {
        let mut resolved: Vec<(Kind, Vec<Entry>)> = Vec::new();
        // Services first: routers are kept only when their service is.
        let mut services: FastMap<&str, ()> = FastMap::default();
        let mut by_kind: BTreeMap<Kind, Vec<Entry>> = BTreeMap::new();
        for kind in [Kind::Services, Kind::Middlewares, Kind::Routers] {
            let mut out = Vec::new();
            for (name, definitions) in map(protocol, kind) {
                let Some(fragment) = resolve(protocol, kind, name, definitions, &mut errors) else {
                    continue;
                };
                match kind {
                    Kind::Services => {
                        services.insert(name.as_str(), ());
                    }
                    Kind::Routers => {
                        let service = definitions[0].fragment().service.as_deref();
                        if !service.is_some_and(|s| s.contains('@') || services.contains_key(s)) {
                            continue;
                        }
                    }
                    Kind::Middlewares => {}
                }
                out.push((definitions[0].fragment().key.as_slice(), fragment));
            }
            by_kind.insert(kind, out);
        }
        for (kind, entries) in by_kind {
            if !entries.is_empty() {
                resolved.push((kind, entries));
            }
        }
        if resolved.is_empty() {
            continue;
        }
        if !first_protocol {
            json.push(b',');
        }
        first_protocol = false;
        write_key(&mut json, protocol.key());
        json.push(b'{');
        for (i, (kind, entries)) in resolved.into_iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            write_key(&mut json, kind.key());
            let start = json.len();
            json.push(b'{');
            for (j, (name, fragment)) in entries.iter().enumerate() {
                if j > 0 {
                    json.push(b',');
                }
                json.extend_from_slice(name);
                json.extend_from_slice(fragment);
            }
            json.push(b'}');
            ranges.push((protocol, kind.key(), start..json.len()));
        }
        json.push(b'}');
    }
    json.push(b'}');
    Rendered {
        json,
        parts: ranges,
        errors,
    }
}

/// `"key":`, with the key escaped as JSON.
fn write_key(out: &mut Vec<u8>, key: &str) {
    serde_json::to_writer(&mut *out, key).expect("a string serialises");
    out.push(b':');
}

/// FNV-1a: the maps below are keyed by names and ids from the control plane (not by
/// anything a client sends), rebuilt on every render, where SipHash's cost shows.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// An allocation that may receive traffic, with the node it runs on.
#[derive(Clone, Copy)]
struct Backend<'a> {
    allocation: &'a pb::Allocation,
    node: &'a pb::Node,
}

/// Whether an allocation may receive traffic, given its node.
pub fn is_routable(allocation: &pb::Allocation, node: &pb::Node) -> bool {
    let Some(status) = allocation.status.as_ref() else {
        return false;
    };
    allocation.desired_state() != pb::AllocationDesiredState::Stop
        && status.state() == pb::AllocationState::Running
        && matches!(
            status.health(),
            pb::HealthState::Healthy | pb::HealthState::None
        )
        && node.status() != pb::NodeStatus::Down
        && matches!(
            node.availability(),
            pb::NodeAvailability::Unspecified | pb::NodeAvailability::Active
        )
}

/// Routable allocations by service name, in allocation-key order.
fn routable_backends<'a>(
    nodes: &'a BTreeMap<String, pb::Node>,
    allocations: &'a BTreeMap<String, pb::Allocation>,
) -> FastMap<&'a str, Vec<Backend<'a>>> {
    let mut by_id: FastMap<&str, &pb::Node> = FastMap::default();
    let mut by_name: FastMap<&str, &pb::Node> = FastMap::default();
    for node in nodes.values() {
        by_id.insert(node.id.as_str(), node);
        if let Some(d) = node.description.as_ref() {
            by_name.insert(d.name.as_str(), node);
        }
    }
    let mut out: FastMap<&str, Vec<Backend>> = FastMap::default();
    for allocation in allocations.values() {
        let node = by_id
            .get(allocation.node_id.as_str())
            .or_else(|| by_name.get(allocation.node_name.as_str()));
        let Some(node) = node.copied() else {
            continue;
        };
        if is_routable(allocation, node) {
            out.entry(allocation.service_name.as_str())
                .or_default()
                .push(Backend { allocation, node });
        }
    }
    out
}

/// One service's contribution: its HTTP, TCP and UDP sections with defaults applied
/// and servers filled. `Err` drops the whole service (a container Traefik would skip);
/// problems pushed to `problems` drop only a router.
fn build_service(
    name: &str,
    spec: &pb::ServiceSpec,
    config: LabelConfig,
    backends: &[Backend],
    opts: &RenderOptions,
    problems: &mut Vec<String>,
) -> Result<[Section; 3], String> {
    let LabelConfig {
        mut http,
        mut tcp,
        mut udp,
        ..
    } = config;
    let mut layer4 = false;
    for (protocol, section) in [(Protocol::Tcp, &mut tcp), (Protocol::Udp, &mut udp)] {
        if section.routers.is_empty() && section.services.is_empty() {
            continue;
        }
        layer4 = true;
        if section.services.is_empty() {
            section.services.insert(name.to_owned(), Value::obj());
        }
        fill_servers(protocol, section, spec, backends)?;
        link_routers(protocol, section, None, problems);
    }
    if !(layer4 && http.is_empty()) {
        if http.services.is_empty() {
            http.services.insert(name.to_owned(), Value::obj());
        }
        fill_servers(Protocol::Http, &mut http, spec, backends)?;
        if http.routers.is_empty() && http.services.len() == 1 {
            http.routers.insert(name.to_owned(), Value::obj());
        }
        let rule = match &opts.default_domain {
            Some(domain) => format!("Host(`{name}.{domain}`)"),
            None => format!("Host(`{name}`)"),
        };
        link_routers(Protocol::Http, &mut http, Some(&rule), problems);
        check_middlewares(&mut http.middlewares)?;
    }
    let mut sections = [http, tcp, udp];
    for section in sections.iter_mut() {
        drop_serverless(section);
    }
    Ok(sections)
}

/// Gives routers without a rule the default rule (HTTP) or drops them (TCP), and links
/// routers without a service to the only service.
fn link_routers(
    protocol: Protocol,
    section: &mut Section,
    default_rule: Option<&str>,
    problems: &mut Vec<String>,
) {
    let only_service = match section.services.len() {
        1 => section.services.keys().next().cloned(),
        _ => None,
    };
    let count = section.services.len();
    section.routers.retain(|router, value| {
        let fields = value.as_obj_mut().expect("routers are objects");
        if protocol != Protocol::Udp && !fields.contains_key("rule") {
            match default_rule {
                Some(rule) => {
                    fields.insert("rule".into(), Value::Str(rule.to_owned()));
                }
                None => {
                    problems.push(format!(
                        "{} router {router:?} has no rule; left out",
                        protocol.key()
                    ));
                    return false;
                }
            }
        }
        if !fields.contains_key("service") {
            match &only_service {
                Some(service) => {
                    fields.insert("service".into(), Value::Str(service.clone()));
                }
                None => {
                    problems.push(format!(
                        "{} router {router:?} names no service and the labels declare {count}; left out",
                        protocol.key()
                    ));
                    return false;
                }
            }
        }
        true
    });
}

/// Replaces each load balancer's `server` template with the servers of the routable
/// allocations.
fn fill_servers(
    protocol: Protocol,
    section: &mut Section,
    spec: &pb::ServiceSpec,
    backends: &[Backend],
) -> Result<(), String> {
    for (service, value) in section.services.iter_mut() {
        let fields = value.as_obj_mut().expect("services are objects");
        let lb = fields
            .entry("loadBalancer".to_owned())
            .or_insert_with(Value::obj)
            .as_obj_mut()
            .expect("load balancers are objects");
        let mut template = match lb.remove("server") {
            Some(Value::Obj(t)) => t,
            _ => BTreeMap::new(),
        };
        let published = |port: u32| {
            spec.ports
                .iter()
                .any(|p| p.container_port == port && protocol.carries(p.protocol()))
        };
        let port = match template.remove("port") {
            Some(Value::Int(port)) => {
                let port = u32::try_from(port)
                    .ok()
                    .filter(|p| (1..=65535).contains(p))
                    .ok_or_else(|| {
                        format!(
                            "{} service {service:?}: server port {port} is not a port number",
                            protocol.key()
                        )
                    })?;
                if !published(port) {
                    return Err(format!(
                        "{} service {service:?}: server port {port} is not published in spec.ports ({})",
                        protocol.key(),
                        if protocol == Protocol::Udp { "udp" } else { "tcp" }
                    ));
                }
                port
            }
            _ => spec
                .ports
                .iter()
                .filter(|p| protocol.carries(p.protocol()))
                .map(|p| p.container_port)
                .min()
                .ok_or_else(|| {
                    format!(
                        "{} service {service:?}: no port: publish one in spec.ports or set its loadbalancer.server.port label",
                        protocol.key()
                    )
                })?,
        };
        let scheme = match template.remove("scheme") {
            Some(Value::Str(s)) if matches!(s.as_str(), "http" | "https" | "h2c") => s,
            Some(Value::Str(s)) => {
                return Err(format!(
                    "{} service {service:?}: server scheme {s:?} is not http, https or h2c",
                    protocol.key()
                ));
            }
            _ => "http".to_owned(),
        };
        let mut servers: Vec<Value> = backends
            .iter()
            .filter_map(|b| address(b, port, protocol))
            .map(|address| {
                let mut server = template.clone();
                match protocol {
                    Protocol::Http => {
                        server.insert("url".into(), Value::Str(format!("{scheme}://{address}")))
                    }
                    Protocol::Tcp | Protocol::Udp => {
                        server.insert("address".into(), Value::Str(address))
                    }
                };
                Value::Obj(server)
            })
            .collect();
        servers.sort_by(|a, b| server_key(a).cmp(server_key(b)));
        servers.dedup();
        lb.insert("servers".into(), Value::List(servers));
    }
    Ok(())
}

fn server_key(server: &Value) -> &str {
    server
        .as_obj()
        .and_then(|s| s.get("url").or_else(|| s.get("address")))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `ip:port` (or `[ip6]:port`) where others reach container port `port` of a backend.
fn address(backend: &Backend, port: u32, protocol: Protocol) -> Option<String> {
    let status = backend.allocation.status.as_ref()?;
    let endpoint = status
        .endpoints
        .iter()
        .filter(|e| e.container_port == port && protocol.carries(e.protocol()) && e.host_port != 0)
        .min_by(|a, b| (&a.host_ip, a.host_port).cmp(&(&b.host_ip, b.host_port)))?;
    let ip = match endpoint.host_ip.as_str() {
        "" | "0.0.0.0" | "::" => backend
            .node
            .description
            .as_ref()
            .and_then(|d| d.addresses.as_ref())
            .map(|a| a.advertise_ip.as_str())
            .filter(|ip| !ip.is_empty())?,
        ip => ip,
    };
    Some(if ip.contains(':') {
        format!("[{ip}]:{}", endpoint.host_port)
    } else {
        format!("{ip}:{}", endpoint.host_port)
    })
}

/// Leaves out load balancers without servers and the routers that point to them.
fn drop_serverless(section: &mut Section) {
    let mut gone = BTreeSet::new();
    section.services.retain(|name, value| {
        let has_servers = value
            .as_obj()
            .and_then(|s| s.get("loadBalancer"))
            .and_then(Value::as_obj)
            .and_then(|lb| lb.get("servers"))
            .is_some_and(|s| matches!(s, Value::List(items) if !items.is_empty()));
        if !has_servers {
            gone.insert(name.clone());
        }
        has_servers
    });
    if !gone.is_empty() {
        section.routers.retain(|_, router| {
            router
                .as_obj()
                .and_then(|r| r.get("service"))
                .and_then(Value::as_str)
                .is_none_or(|service| !gone.contains(service))
        });
    }
}

/// Each middleware names exactly one type, and a retry says how many attempts.
fn check_middlewares(middlewares: &mut BTreeMap<String, Value>) -> Result<(), String> {
    middlewares.retain(|_, m| !m.prune());
    for (name, middleware) in middlewares.iter() {
        let types = middleware.as_obj().expect("middlewares are objects");
        if types.len() > 1 {
            return Err(format!(
                "middleware {name:?} has {} types ({}); a middleware has exactly one",
                types.len(),
                types.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(retry) = types.get("retry").and_then(Value::as_obj)
            && !retry.contains_key("attempts")
        {
            return Err(format!("middleware {name:?}: retry needs attempts"));
        }
    }
    Ok(())
}

fn without_servers(service: &Value) -> Value {
    let mut copy = service.clone();
    if let Some(lb) = copy
        .as_obj_mut()
        .and_then(|s| s.get_mut("loadBalancer"))
        .and_then(Value::as_obj_mut)
    {
        lb.remove("servers");
    }
    copy
}

fn merge_servers(into: &mut Value, from: Value) {
    let servers = |v: Value| -> Vec<Value> {
        match v {
            Value::Obj(mut s) => match s.remove("loadBalancer") {
                Some(Value::Obj(mut lb)) => match lb.remove("servers") {
                    Some(Value::List(items)) => items,
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    };
    let added = servers(from);
    if let Some(Value::List(items)) = into
        .as_obj_mut()
        .and_then(|s| s.get_mut("loadBalancer"))
        .and_then(Value::as_obj_mut)
        .and_then(|lb| lb.get_mut("servers"))
    {
        items.extend(added);
        items.sort_by(|a, b| server_key(a).cmp(server_key(b)));
        items.dedup();
    }
}
