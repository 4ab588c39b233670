//! Validation of client requests of the `constellation.v1` protocol.
//!
//! This module owns every rule a request must satisfy on its own, before the control
//! plane acts on it: the syntax of names, image references, paths, addresses,
//! quantities, signals and durations; ranges of numbers and enum values; uniqueness
//! within one request; sanity bounds on sizes; and that the names a service spec refers
//! to (secrets, configs, other services) resolve against a [`KnownNames`] the caller
//! builds from state. It does not own preconditions on state (expected versions, the
//! existence of what a delete names), authorization, or whether a service can be placed.
//!
//! Every rule is checked; a request is answered with all of its violations at once, as
//! one [`Error::InvalidArgument`], never only the first.
//!
//! # Field paths
//!
//! A violation names its field relative to the request message, with the proto field
//! names (snake_case) joined by `.`:
//!
//! - list elements as `[i]`, 0-based: `spec.ports[1].container_port`;
//! - map entries as `["key"]`, the key quoted and escaped like a Rust string literal:
//!   `spec.env["MY_KEY"]`, `spec.labels["constellation.owner"]`; a bad key and a bad
//!   value of one entry are both reported at the entry, the reason says which;
//! - a oneof member by its own name (`spec.volumes[0].tmpfs.size`), an unset oneof by
//!   the oneof's name (`spec.volumes[0].source`, `spec.migration_rules[0].trigger`);
//! - a rule about a whole list or map (too many entries) names the list: `spec.ports`;
//! - a duration by its field (`spec.health_check.interval`), never `.seconds`/`.nanos`.
//!
//! [`service_spec`] roots paths at `spec` (the field of `ApplyServiceRequest`),
//! [`secret_spec`] at `secret` and [`config_spec`] at `config` (the fields of
//! `PutSecretRequest` and `PutConfigRequest`).
//!
//! # Quantities
//!
//! Memory ([`parse_memory`]) is read as Docker reads it, since Docker enforces it:
//! every unit is a power of 1024 and case does not matter, so `512m`, `512M`, `512mb`,
//! `512Mi` and `512MiB` are all 512 × 1024² bytes. Kubernetes' decimal `k`/`M`/`G`
//! (powers of 1000) and its milli-byte `m` are deliberately not supported: the same
//! text would mean two different sizes. CPU ([`parse_cpus`]) is read as Kubernetes
//! reads it: cores with up to three decimals (`"1.5"`, `"0.25"`) or millicores with an
//! `m` suffix (`"1500m"`), both as millicores.
//!
//! # Durations
//!
//! A duration must be well formed (no negative part, nanos below 10⁹, at most 10,000
//! years). Intervals, timeouts, deadlines and TTLs must be positive when set; delays
//! and grace periods where zero means "none" (`update.delay`, `reschedule.delay`,
//! `stop_grace_period`, `health_check.start_period`) may be zero.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration as StdDuration;

use constellation_proto::v1::{
    AcquireLeaseRequest, ApplyServiceRequest, BuildSpec, ConfigSpec, Constraint,
    ConstraintOperator, CreateMigrationRequest, DelayFunction, DependencyCondition, DeviceMapping,
    DrainNodeRequest, ExposedPort, ExtraHost, FailureAction, FallbackSpec, FileReference,
    HealthCheck, ListAllocationsRequest, MigrationRule, NetworkAttachment, NetworkSpec, Placement,
    PortSpec, Protocol, PullPolicy, PutConfigRequest, PutSecretRequest, ReleaseLeaseRequest,
    RenewLeaseRequest, ReschedulePolicy, Resources, RestartCondition, RestartPolicy, SecretSpec,
    ServiceSpec, Ulimit, UpdateOrder, UpdatePolicy, VolumeMount, migration_rule::Trigger,
    volume_mount::Source,
};
use pbjson_types::Duration;

use crate::error::{Error, FieldViolations};

/// Entries allowed in any one list or map of a request: a sanity bound on request size
/// and validation work, far above what a real service needs.
pub const MAX_ITEMS: usize = 1000;
/// Bytes in a name or other identifier (the DNS limit for a full name).
pub const MAX_NAME_LEN: usize = 253;
/// Bytes in a label, path or other short value.
pub const MAX_VALUE_LEN: usize = 4096;
/// Bytes in one command argument, environment value or build argument, which may carry
/// scripts or certificates.
pub const MAX_ARG_LEN: usize = 32 * 1024;
/// Replicas of one service: a sanity bound that catches typos (`100000` for `10`).
pub const MAX_REPLICAS: u32 = 10_000;
/// Bytes of secret data, as Docker Swarm allows.
pub const MAX_SECRET_BYTES: usize = 500 * 1024;
/// Bytes of config data, as Docker Swarm allows.
pub const MAX_CONFIG_BYTES: usize = 1000 * 1024;
/// Smallest memory limit Docker accepts.
pub const MIN_MEMORY_LIMIT: u64 = 6 * 1024 * 1024;
/// Bounds of a lease TTL, both included.
pub const MIN_LEASE_TTL: StdDuration = StdDuration::from_secs(1);
pub const MAX_LEASE_TTL: StdDuration = StdDuration::from_secs(3600);

/// The largest `google.protobuf.Duration`: 10,000 years.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
/// Linux's HOST_NAME_MAX.
const HOST_NAME_MAX: usize = 64;
/// Linux's NAME_MAX, the longest file name.
const FILE_NAME_MAX: usize = 255;
/// Smallest interval or timeout of a health check Docker accepts.
const MIN_HEALTH_DURATION: StdDuration = StdDuration::from_millis(1);
const REQUIRED: &str = "required";
/// Networks every Docker host has; they cannot be (re)defined.
const PREDEFINED_NETWORKS: [&str; 3] = ["bridge", "host", "none"];
/// Resource limits Docker knows (`docker run --ulimit`).
const ULIMITS: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];
/// Linux signal names without the `SIG` prefix (real-time ones are handled apart).
const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
    "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
    "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR",
];

/// Names a service spec may refer to. The caller builds it from the current state: the
/// secrets and configs stored and the services defined (plus any applied together with
/// this one). Resolution is always done: a spec referring to a name not in here is
/// invalid, also in a dry run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownNames {
    pub secrets: BTreeSet<String>,
    pub configs: BTreeSet<String>,
    pub services: BTreeSet<String>,
}

/// How long a duration may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationRule {
    /// Zero or longer.
    NonNegative,
    /// Longer than zero.
    Positive,
    /// At least this long.
    AtLeast(StdDuration),
    /// Within these bounds, both included.
    Between(StdDuration, StdDuration),
}

impl DurationRule {
    fn check(self, d: StdDuration) -> Result<(), String> {
        match self {
            DurationRule::NonNegative => Ok(()),
            DurationRule::Positive if d.is_zero() => Err("must be positive".into()),
            DurationRule::Positive => Ok(()),
            DurationRule::AtLeast(min) if d < min => Err(format!("must be at least {min:?}")),
            DurationRule::AtLeast(_) => Ok(()),
            DurationRule::Between(min, max) if d < min || d > max => {
                Err(format!("must be between {min:?} and {max:?}, is {d:?}"))
            }
            DurationRule::Between(..) => Ok(()),
        }
    }
}

/// A parsed image reference, borrowing from the text it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageReference<'a> {
    /// Registry host with an optional port, when the reference names one.
    pub domain: Option<&'a str>,
    /// Repository path, such as `library/nginx`.
    pub path: &'a str,
    pub tag: Option<&'a str>,
    /// `algorithm:hex`, such as `sha256:…`.
    pub digest: Option<&'a str>,
}

mod syntax;

use syntax::*;
pub use syntax::{cidr_contains, parse_cidr, parse_cpus, parse_image_reference, parse_memory};

// ---------------------------------------------------------------------------------
// Reporting and field paths
// ---------------------------------------------------------------------------------

/// The checker's helpers, on the violations being collected.
trait Check {
    fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>);

    /// Records a violation of `field` unless `ok`.
    fn check(&mut self, field: impl Into<String>, ok: bool, reason: impl Into<String>) {
        if !ok {
            self.fail(field, reason);
        }
    }

    /// Records the error of `result` against `field`; the value when there is none.
    fn result<T>(&mut self, field: impl Into<String>, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(reason) => {
                self.fail(field, reason);
                None
            }
        }
    }
}

impl Check for FieldViolations {
    fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.push(field, reason);
    }
}

/// `base.name`
fn join(base: &str, name: &str) -> String {
    format!("{base}.{name}")
}

/// `base[i]`
fn at(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// `base["key"]`
fn entry(base: &str, key: &str) -> String {
    format!("{base}[{key:?}]")
}

/// The index `key` was first seen at, when it was seen before `i`.
fn first_seen<K: Ord>(seen: &mut BTreeMap<K, usize>, key: K, i: usize) -> Option<usize> {
    let first = *seen.entry(key).or_insert(i);
    (first != i).then_some(first)
}

/// Whether a list or map of `len` entries is within [`MAX_ITEMS`]; its entries are
/// only checked when it is.
fn within_cap(v: &mut FieldViolations, field: &str, len: usize) -> bool {
    let ok = len <= MAX_ITEMS;
    v.check(
        field,
        ok,
        format!(
            "at most {MAX_ITEMS} entries are allowed (a sanity bound on request size), got {len}"
        ),
    );
    ok
}

// ---------------------------------------------------------------------------------
// Request entry points
// ---------------------------------------------------------------------------------

/// `ApplyService`: the spec is required and checked by [`service_spec`].
pub fn apply_service(req: &ApplyServiceRequest, known: &KnownNames) -> Result<(), Error> {
    match &req.spec {
        Some(spec) => service_spec(spec, known),
        None => Err(Error::invalid("spec", REQUIRED)),
    }
}

/// Checks a whole service spec, paths rooted at `spec`, and returns every violation.
pub fn service_spec(spec: &ServiceSpec, known: &KnownNames) -> Result<(), Error> {
    let mut v = FieldViolations::default();
    service_spec_at("spec", spec, known, &mut v);
    v.into_result()
}

/// `PutSecret`: the secret is required and checked by [`secret_spec`].
pub fn put_secret(req: &PutSecretRequest) -> Result<(), Error> {
    let mut v = FieldViolations::default();
    match &req.secret {
        Some(spec) => secret_spec("secret", spec, &mut v),
        None => v.fail("secret", REQUIRED),
    }
    v.into_result()
}

/// `PutConfig`: the config is required and checked by [`config_spec`].
pub fn put_config(req: &PutConfigRequest) -> Result<(), Error> {
    let mut v = FieldViolations::default();
    match &req.config {
        Some(spec) => config_spec("config", spec, &mut v),
        None => v.fail("config", REQUIRED),
    }
    v.into_result()
}

/// `AcquireLease`: name, holder, and a TTL within [`MIN_LEASE_TTL`]..=[`MAX_LEASE_TTL`].
pub fn acquire_lease(req: &AcquireLeaseRequest) -> Result<(), Error> {
    let mut v = FieldViolations::default();
    lease_name("name", &req.name, &mut v);
    lease_holder("holder", &req.holder, &mut v);
    lease_ttl("ttl", req.ttl.as_ref(), true, &mut v);
    v.into_result()
}

/// `RenewLease`: name, holder, and the new TTL when one is given.
pub fn renew_lease(req: &RenewLeaseRequest) -> Result<(), Error> {
    let mut v = FieldViolations::default();
    lease_name("name", &req.name, &mut v);
    lease_holder("holder", &req.holder, &mut v);
    lease_ttl("ttl", req.ttl.as_ref(), false, &mut v);
    v.into_result()
}

/// `ReleaseLease`: name and holder.
pub fn release_lease(req: &ReleaseLeaseRequest) -> Result<(), Error> {
    let mut v = FieldViolations::default();
    lease_name("name", &req.name, &mut v);
    lease_holder("holder", &req.holder, &mut v);
    v.into_result()
}

/// `DrainNode`: a node name, a positive deadline when set, a batch size of at most
/// [`MAX_REPLICAS`] (0 means the default).
pub fn drain_node(req: &DrainNodeRequest) -> Result<(), Error> {
    let mut v = FieldViolations::default();
    node_name("name", &req.name, &mut v);
    opt_duration(
        &mut v,
        "deadline".into(),
        req.deadline.as_ref(),
        DurationRule::Positive,
    );
    v.check(
        "batch_size",
        req.batch_size <= MAX_REPLICAS,
        format!("must be at most {MAX_REPLICAS}, the most replicas a service can have"),
    );
    v.into_result()
}

/// `CreateMigration`: a service name, an allocation id and a target node when set.
pub fn create_migration(req: &CreateMigrationRequest) -> Result<(), Error> {
    let mut v = FieldViolations::default();
    name("service_name", &req.service_name, &mut v);
    if !req.allocation_id.is_empty() {
        v.result("allocation_id", allocation_id(&req.allocation_id));
    }
    if !req.target_node.is_empty() {
        node_name("target_node", &req.target_node, &mut v);
    }
    v.into_result()
}

/// `ListAllocations`: the filters, when set, are a service name and a node name.
pub fn list_allocations(req: &ListAllocationsRequest) -> Result<(), Error> {
    let mut v = FieldViolations::default();
    if !req.service_name.is_empty() {
        name("service_name", &req.service_name, &mut v);
    }
    if !req.node_name.is_empty() {
        node_name("node_name", &req.node_name, &mut v);
    }
    v.into_result()
}

/// Runs one field validator on its own, for requests of a single field:
/// `validate::single(validate::node_name, "name", &req.name)`.
pub fn single(
    check: fn(&str, &str, &mut FieldViolations),
    field: &str,
    value: &str,
) -> Result<(), Error> {
    let mut v = FieldViolations::default();
    check(field, value, &mut v);
    v.into_result()
}

// ---------------------------------------------------------------------------------
// Reusable field validators
// ---------------------------------------------------------------------------------

/// A service (or fallback, port) name: a DNS label of lower-case letters, digits and
/// '-', 1 to 63 characters, starting with a letter and not ending with '-'.
pub fn name(field: &str, value: &str, v: &mut FieldViolations) {
    v.result(field, dns_label(value));
}

/// A node name: a DNS-1123 subdomain, lower-case labels of letters, digits and '-'
/// separated by dots, at most 253 characters.
pub fn node_name(field: &str, value: &str, v: &mut FieldViolations) {
    v.result(field, dns_name(value, MAX_NAME_LEN, false));
}

/// An RFC 1123 host name: labels of letters (either case), digits and '-' separated by
/// dots, at most 253 characters.
pub fn hostname(field: &str, value: &str, v: &mut FieldViolations) {
    v.result(field, dns_name(value, MAX_NAME_LEN, true));
}

/// A secret, config or lease name: letters, digits, '_', '.' and '-', starting and
/// ending with a letter or digit, at most 253 characters.
pub fn object_name(field: &str, value: &str, v: &mut FieldViolations) {
    v.result(field, object_name_syntax(value));
}

/// A lease name; the syntax of [`object_name`].
pub fn lease_name(field: &str, value: &str, v: &mut FieldViolations) {
    object_name(field, value, v);
}

/// A lease holder: any printable text of 1 to 253 bytes.
pub fn lease_holder(field: &str, value: &str, v: &mut FieldViolations) {
    let reason = if value.is_empty() {
        Some(REQUIRED.to_string())
    } else if value.len() > MAX_NAME_LEN {
        Some(format!(
            "must be at most {MAX_NAME_LEN} bytes, is {}",
            value.len()
        ))
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters".to_string())
    } else {
        None
    };
    if let Some(reason) = reason {
        v.fail(field, reason);
    }
}

/// A lease TTL within [`MIN_LEASE_TTL`]..=[`MAX_LEASE_TTL`]; absent is a violation only
/// when `required`.
pub fn lease_ttl(field: &str, ttl: Option<&Duration>, required: bool, v: &mut FieldViolations) {
    match ttl {
        Some(d) => {
            duration(
                field,
                d,
                DurationRule::Between(MIN_LEASE_TTL, MAX_LEASE_TTL),
                v,
            );
        }
        None => v.check(field, !required, REQUIRED),
    }
}

/// An image reference, `[registry[:port]/]path[:tag][@digest]`; see
/// [`parse_image_reference`].
pub fn image(field: &str, value: &str, v: &mut FieldViolations) {
    v.result(field, parse_image_reference(value));
}

/// A well-formed duration that satisfies `rule`; the duration when it does.
pub fn duration(
    field: &str,
    value: &Duration,
    rule: DurationRule,
    v: &mut FieldViolations,
) -> Option<StdDuration> {
    let checked = to_std_duration(value).and_then(|d| rule.check(d).map(|()| d));
    v.result(field, checked)
}

/// A `google.protobuf.Duration` as a std one: neither part negative, nanos below 10⁹,
/// at most 10,000 years.
pub fn to_std_duration(d: &Duration) -> Result<StdDuration, String> {
    let (Ok(seconds), Ok(nanos)) = (u64::try_from(d.seconds), u32::try_from(d.nanos)) else {
        return Err("must not be negative".into());
    };
    if nanos > 999_999_999 {
        return Err(format!("nanos must be below 1000000000, is {nanos}"));
    }
    if d.seconds > MAX_DURATION_SECONDS {
        return Err(format!(
            "must be at most {MAX_DURATION_SECONDS}s (10000 years)"
        ));
    }
    Ok(StdDuration::new(seconds, nanos))
}

fn opt_duration(
    v: &mut FieldViolations,
    field: String,
    value: Option<&Duration>,
    rule: DurationRule,
) -> Option<StdDuration> {
    value.and_then(|d| duration(&field, d, rule, v))
}

/// A secret: its name, 1 byte to [`MAX_SECRET_BYTES`] of data, and labels.
pub fn secret_spec(field: &str, spec: &SecretSpec, v: &mut FieldViolations) {
    object_name(&join(field, "name"), &spec.name, v);
    let len = spec.data.len();
    v.check(
        join(field, "data"),
        (1..=MAX_SECRET_BYTES).contains(&len),
        format!("must hold 1 to {MAX_SECRET_BYTES} bytes, holds {len}"),
    );
    string_map(
        v,
        &join(field, "labels"),
        &spec.labels,
        Keys::Label,
        MAX_VALUE_LEN,
    );
}

/// A config: its name, at most [`MAX_CONFIG_BYTES`] of data (an empty file is allowed),
/// and labels.
pub fn config_spec(field: &str, spec: &ConfigSpec, v: &mut FieldViolations) {
    object_name(&join(field, "name"), &spec.name, v);
    let len = spec.data.len();
    v.check(
        join(field, "data"),
        len <= MAX_CONFIG_BYTES,
        format!("must hold at most {MAX_CONFIG_BYTES} bytes, holds {len}"),
    );
    string_map(
        v,
        &join(field, "labels"),
        &spec.labels,
        Keys::Label,
        MAX_VALUE_LEN,
    );
}

// ---------------------------------------------------------------------------------
// The service spec, field by field
// ---------------------------------------------------------------------------------

/// Checks a service spec with paths rooted at `p`, adding every violation to `v`.
pub fn service_spec_at(p: &str, s: &ServiceSpec, known: &KnownNames, v: &mut FieldViolations) {
    name(&join(p, "name"), &s.name, v);
    service_image(v, p, s);
    if !s.container_name.is_empty() {
        v.result(
            join(p, "container_name"),
            docker_name(&s.container_name, 2, MAX_NAME_LEN),
        );
    }
    if !s.hostname.is_empty() {
        v.result(
            join(p, "hostname"),
            dns_name(&s.hostname, HOST_NAME_MAX, true),
        );
    }
    string_list(v, &join(p, "command"), &s.command, MAX_ARG_LEN);
    string_list(v, &join(p, "entrypoint"), &s.entrypoint, MAX_ARG_LEN);
    v.result(join(p, "user"), text(&s.user, MAX_NAME_LEN));
    if !s.working_dir.is_empty() {
        v.result(join(p, "working_dir"), absolute_path(&s.working_dir));
    }
    string_map(v, &join(p, "env"), &s.env, Keys::Env, MAX_ARG_LEN);
    string_map(v, &join(p, "labels"), &s.labels, Keys::Label, MAX_VALUE_LEN);
    ports(v, &join(p, "ports"), &s.ports);
    expose(v, &join(p, "expose"), &s.expose);
    volumes(v, &join(p, "volumes"), &s.volumes);
    let defined = network_definitions(v, &join(p, "network_definitions"), &s.network_definitions);
    network_attachments(v, &join(p, "networks"), &s.networks, &defined);
    if let Some(h) = &s.health_check {
        health_check(v, &join(p, "health_check"), h);
    }
    if let Some(r) = &s.resources {
        resources(v, &join(p, "resources"), r);
    }
    ulimits(v, &join(p, "ulimits"), &s.ulimits);
    devices(v, &join(p, "devices"), &s.devices);
    capabilities(v, &join(p, "cap_add"), &s.cap_add);
    capabilities(v, &join(p, "cap_drop"), &s.cap_drop);
    extra_hosts(v, &join(p, "extra_hosts"), &s.extra_hosts);
    if let Some(r) = &s.restart {
        restart(v, &join(p, "restart"), r);
    }
    if let Some(n) = s.replicas {
        v.check(
            join(p, "replicas"),
            n <= MAX_REPLICAS,
            format!("must be at most {MAX_REPLICAS} (a sanity bound; split larger fleets into several services)"),
        );
    }
    if let Some(pl) = &s.placement {
        placement(v, &join(p, "placement"), pl);
    }
    fallbacks(v, &join(p, "fallbacks"), &s.fallbacks);
    if let Some(u) = &s.update {
        update(v, &join(p, "update"), u);
    }
    if let Some(r) = &s.reschedule {
        reschedule(v, &join(p, "reschedule"), r);
    }
    let secrets = join(p, "secrets");
    file_references(v, &secrets, &s.secrets, &known.secrets, FileKind::Secret);
    let configs = join(p, "configs");
    file_references(v, &configs, &s.configs, &known.configs, FileKind::Config);
    if let Some(b) = &s.build {
        build(v, &join(p, "build"), b);
    }
    depends_on(v, &join(p, "depends_on"), s, &known.services);
    known_enum::<PullPolicy>(v, join(p, "pull_policy"), s.pull_policy, "pull policy");
    opt_duration(
        v,
        join(p, "pull_timeout"),
        s.pull_timeout.as_ref(),
        DurationRule::Positive,
    );
    if !s.stop_signal.is_empty() {
        v.result(join(p, "stop_signal"), stop_signal(&s.stop_signal));
    }
    let grace = s.stop_grace_period.as_ref();
    opt_duration(
        v,
        join(p, "stop_grace_period"),
        grace,
        DurationRule::NonNegative,
    );
    migration_rules(v, &join(p, "migration_rules"), &s.migration_rules);
}

fn service_image(v: &mut FieldViolations, p: &str, s: &ServiceSpec) {
    let field = join(p, "image");
    if s.image.is_empty() {
        v.check(field, s.build.is_some(), "required unless build is set");
    } else {
        image(&field, &s.image, v);
    }
}

/// A known value of the enum `E`; the value when it is.
fn known_enum<E: TryFrom<i32>>(
    v: &mut FieldViolations,
    field: String,
    value: i32,
    what: &str,
) -> Option<E> {
    let known = E::try_from(value).ok();
    v.check(
        field,
        known.is_some(),
        format!("{value} is not a known {what}"),
    );
    known
}

fn string_list(v: &mut FieldViolations, base: &str, items: &[String], max: usize) {
    if within_cap(v, base, items.len()) {
        for (i, s) in items.iter().enumerate() {
            v.result(at(base, i), text(s, max));
        }
    }
}

/// What a map's keys must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Environment variables and build arguments: non-empty, no '='.
    Env,
    /// Labels: non-empty, not under the reserved `constellation.` prefix.
    Label,
    /// Driver options: non-empty.
    Plain,
}

fn string_map(
    v: &mut FieldViolations,
    base: &str,
    map: &BTreeMap<String, String>,
    keys: Keys,
    max_value: usize,
) {
    if !within_cap(v, base, map.len()) {
        return;
    }
    for (k, value) in map {
        let field = entry(base, k);
        if let Err(reason) = map_key(k, keys) {
            v.fail(field.clone(), reason);
        }
        if let Err(reason) = text(value, max_value) {
            v.fail(field, format!("value {reason}"));
        }
    }
}

fn map_key(k: &str, keys: Keys) -> Result<(), String> {
    if k.is_empty() {
        return Err("key must not be empty".into());
    }
    text(k, MAX_VALUE_LEN).map_err(|e| format!("key {e}"))?;
    match keys {
        Keys::Env if k.contains('=') => Err("key must not contain '='".into()),
        Keys::Label if k.to_ascii_lowercase().starts_with("constellation.") => {
            Err("keys under \"constellation.\" are reserved for the system".into())
        }
        _ => Ok(()),
    }
}

fn port_number(v: &mut FieldViolations, field: String, port: u32) -> bool {
    let ok = (1..=65535).contains(&port);
    v.check(field, ok, format!("must be within 1..=65535, is {port}"));
    ok
}

/// A known protocol, unspecified read as TCP.
fn protocol(v: &mut FieldViolations, field: String, value: i32) -> Option<Protocol> {
    known_enum::<Protocol>(v, field, value, "protocol").map(|p| match p {
        Protocol::Unspecified => Protocol::Tcp,
        p => p,
    })
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Unspecified | Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// Whether two host bindings (None: every address) claim a common address.
fn binds_overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => {
            a == b || ((a.is_unspecified() || b.is_unspecified()) && a.is_ipv4() == b.is_ipv4())
        }
    }
}

/// One host binding seen so far: index, address, port, protocol.
type Published = (usize, Option<IpAddr>, u32, Protocol);

fn ports(v: &mut FieldViolations, base: &str, ports: &[PortSpec]) {
    if !within_cap(v, base, ports.len()) {
        return;
    }
    let mut container = BTreeMap::new();
    let mut names = BTreeMap::new();
    let mut published: Vec<Published> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let q = at(base, i);
        let proto = protocol(v, join(&q, "protocol"), port.protocol);
        let container_ok = port_number(v, join(&q, "container_port"), port.container_port);
        let published_ok = port
            .published_port
            .map(|pp| port_number(v, join(&q, "published_port"), pp));
        let host_ip = match port.host_ip.as_str() {
            "" => Some(None),
            ip => v.result(join(&q, "host_ip"), parse_ip(ip)).map(Some),
        };
        if !port.name.is_empty() {
            name(&join(&q, "name"), &port.name, v);
            if let Some(j) = first_seen(&mut names, port.name.as_str(), i) {
                v.fail(
                    join(&q, "name"),
                    format!("port name is already used by ports[{j}]"),
                );
            }
        }
        let Some(proto) = proto else { continue };
        if container_ok && let Some(j) = first_seen(&mut container, (port.container_port, proto), i)
        {
            let what = format!("{}/{}", port.container_port, protocol_name(proto));
            v.fail(
                join(&q, "container_port"),
                format!("container port {what} is already listed at ports[{j}]"),
            );
        }
        if let (Some(true), Some(pp), Some(ip)) = (published_ok, port.published_port, host_ip) {
            let clash = published
                .iter()
                .find(|(_, ip2, pp2, pr2)| *pp2 == pp && *pr2 == proto && binds_overlap(ip, *ip2));
            if let Some((j, ..)) = clash {
                let what = format!("{pp}/{}", protocol_name(proto));
                v.fail(join(&q, "published_port"), format!("host port {what} is already published by ports[{j}] on an overlapping address"));
            }
            published.push((i, ip, pp, proto));
        }
    }
}

fn expose(v: &mut FieldViolations, base: &str, ports: &[ExposedPort]) {
    if !within_cap(v, base, ports.len()) {
        return;
    }
    let mut seen = BTreeMap::new();
    for (i, port) in ports.iter().enumerate() {
        let q = at(base, i);
        let proto = protocol(v, join(&q, "protocol"), port.protocol);
        let ok = port_number(v, join(&q, "port"), port.port);
        if let Some(proto) = proto
            && ok
            && let Some(j) = first_seen(&mut seen, (port.port, proto), i)
        {
            let what = format!("{}/{}", port.port, protocol_name(proto));
            v.fail(
                join(&q, "port"),
                format!("port {what} is already exposed at expose[{j}]"),
            );
        }
    }
}

fn volumes(v: &mut FieldViolations, base: &str, mounts: &[VolumeMount]) {
    if !within_cap(v, base, mounts.len()) {
        return;
    }
    let mut targets = BTreeMap::new();
    for (i, m) in mounts.iter().enumerate() {
        let q = at(base, i);
        volume_mount(v, &q, m);
        let field = join(&q, "target");
        if v.result(field.clone(), mount_target(&m.target)).is_some()
            && let Some(j) = first_seen(&mut targets, normalize_path(&m.target), i)
        {
            v.fail(
                field,
                format!("volumes[{j}] is already mounted at {:?}", m.target),
            );
        }
    }
}

fn mount_target(t: &str) -> Result<(), String> {
    absolute_path(t)?;
    if normalize_path(t) == "/" {
        return Err("cannot mount over '/'".into());
    }
    Ok(())
}

fn volume_mount(v: &mut FieldViolations, q: &str, m: &VolumeMount) {
    match &m.source {
        None => v.fail(
            join(q, "source"),
            "one of volume, bind or tmpfs is required",
        ),
        Some(Source::Volume(name)) => {
            v.result(join(q, "volume"), docker_name(name, 2, MAX_NAME_LEN));
        }
        Some(Source::Bind(path)) => {
            v.result(join(q, "bind"), absolute_path(path));
        }
        Some(Source::Tmpfs(t)) => {
            if !t.size.is_empty() {
                v.result(join(q, "tmpfs.size"), parse_memory(&t.size));
            }
            v.check(
                join(q, "tmpfs.mode"),
                t.mode <= 0o7777,
                format!("{:#o} is not a file mode (at most 0o7777)", t.mode),
            );
        }
    }
    let named = matches!(m.source, Some(Source::Volume(_)));
    if !m.driver.is_empty() {
        v.check(join(q, "driver"), named, "applies to named volumes only");
        v.result(join(q, "driver"), text(&m.driver, MAX_NAME_LEN));
    }
    if !m.driver_options.is_empty() {
        v.check(
            join(q, "driver_options"),
            named,
            "apply to named volumes only",
        );
    }
    string_map(
        v,
        &join(q, "driver_options"),
        &m.driver_options,
        Keys::Plain,
        MAX_VALUE_LEN,
    );
}

/// Checks the definitions and returns the first one of each valid name.
fn network_definitions<'s>(
    v: &mut FieldViolations,
    base: &str,
    defs: &'s [NetworkSpec],
) -> BTreeMap<&'s str, &'s NetworkSpec> {
    let mut defined = BTreeMap::new();
    if !within_cap(v, base, defs.len()) {
        return defined;
    }
    let mut seen = BTreeMap::new();
    for (i, d) in defs.iter().enumerate() {
        let q = at(base, i);
        let field = join(&q, "name");
        if v.result(field.clone(), docker_name(&d.name, 1, MAX_NAME_LEN))
            .is_some()
        {
            if PREDEFINED_NETWORKS.contains(&d.name.as_str()) {
                v.fail(
                    field,
                    format!("{:?} is predefined by Docker and cannot be defined", d.name),
                );
            } else if let Some(j) = first_seen(&mut seen, d.name.as_str(), i) {
                v.fail(
                    field,
                    format!(
                        "network {:?} is already defined at network_definitions[{j}]",
                        d.name
                    ),
                );
            } else {
                defined.insert(d.name.as_str(), d);
            }
        }
        network_definition(v, &q, d);
    }
    defined
}

fn network_definition(v: &mut FieldViolations, q: &str, d: &NetworkSpec) {
    v.result(join(q, "driver"), text(&d.driver, MAX_NAME_LEN));
    let subnet = match d.subnet.as_str() {
        "" => None,
        s => v.result(join(q, "subnet"), parse_cidr(s)),
    };
    if !d.gateway.is_empty() {
        let field = join(q, "gateway");
        if let Some(gw) = v.result(field.clone(), parse_ip(&d.gateway)) {
            if d.subnet.is_empty() {
                v.fail(field, "a gateway needs a subnet");
            } else if let Some((net, prefix)) = subnet {
                v.check(
                    field,
                    cidr_contains(net, prefix, gw),
                    format!("{gw} is not inside subnet {}", d.subnet),
                );
            }
        }
    }
    string_map(v, &join(q, "labels"), &d.labels, Keys::Label, MAX_VALUE_LEN);
    string_map(
        v,
        &join(q, "driver_options"),
        &d.driver_options,
        Keys::Plain,
        MAX_VALUE_LEN,
    );
}

fn network_attachments(
    v: &mut FieldViolations,
    base: &str,
    atts: &[NetworkAttachment],
    defined: &BTreeMap<&str, &NetworkSpec>,
) {
    if !within_cap(v, base, atts.len()) {
        return;
    }
    let mut seen = BTreeMap::new();
    for (i, a) in atts.iter().enumerate() {
        let q = at(base, i);
        let field = join(&q, "network");
        if v.result(field.clone(), docker_name(&a.network, 1, MAX_NAME_LEN))
            .is_some()
        {
            if let Some(j) = first_seen(&mut seen, a.network.as_str(), i) {
                v.fail(
                    field,
                    format!(
                        "network {:?} is already attached at networks[{j}]",
                        a.network
                    ),
                );
            } else if matches!(a.network.as_str(), "host" | "none") && atts.len() > 1 {
                v.fail(
                    field,
                    format!(
                        "network {:?} cannot be combined with other networks",
                        a.network
                    ),
                );
            }
        }
        let aliases = join(&q, "aliases");
        if within_cap(v, &aliases, a.aliases.len()) {
            for (k, alias) in a.aliases.iter().enumerate() {
                hostname(&at(&aliases, k), alias, v);
            }
        }
        if !a.ipv4_address.is_empty() {
            static_address(v, &join(&q, "ipv4_address"), a, defined);
        }
    }
}

/// A static IPv4 address needs a defined network with a subnet holding it, or an
/// operator's network (which cannot be checked here).
fn static_address(
    v: &mut FieldViolations,
    field: &str,
    a: &NetworkAttachment,
    defined: &BTreeMap<&str, &NetworkSpec>,
) {
    let Ok(ip) = a.ipv4_address.parse::<Ipv4Addr>() else {
        v.fail(
            field,
            format!("{:?} is not an IPv4 address", a.ipv4_address),
        );
        return;
    };
    if PREDEFINED_NETWORKS.contains(&a.network.as_str()) {
        v.fail(
            field,
            format!(
                "a static address needs a user-defined network, not {:?}",
                a.network
            ),
        );
        return;
    }
    let Some(def) = defined.get(a.network.as_str()) else {
        return;
    };
    match parse_cidr(&def.subnet) {
        Ok((net, prefix)) if net.is_ipv4() => v.check(
            field,
            cidr_contains(net, prefix, IpAddr::V4(ip)),
            format!(
                "{ip} is not inside subnet {} of network {:?}",
                def.subnet, a.network
            ),
        ),
        _ if def.subnet.is_empty() => v.fail(
            field,
            format!("a static address needs a subnet on network {:?}", a.network),
        ),
        _ => {}
    }
}

fn health_check(v: &mut FieldViolations, q: &str, h: &HealthCheck) {
    let test = join(q, "test");
    if within_cap(v, &test, h.test.len()) {
        for (i, s) in h.test.iter().enumerate() {
            v.result(at(&test, i), text(s, MAX_ARG_LEN));
        }
        health_test(v, &test, h);
    }
    let min = DurationRule::AtLeast(MIN_HEALTH_DURATION);
    opt_duration(v, join(q, "interval"), h.interval.as_ref(), min);
    opt_duration(v, join(q, "timeout"), h.timeout.as_ref(), min);
    let field = join(q, "start_period");
    if let Some(d) = opt_duration(
        v,
        field.clone(),
        h.start_period.as_ref(),
        DurationRule::NonNegative,
    ) {
        v.check(
            field,
            d.is_zero() || d >= MIN_HEALTH_DURATION,
            "must be 0 (none) or at least 1ms",
        );
    }
    opt_duration(v, join(q, "start_interval"), h.start_interval.as_ref(), min);
}

fn health_test(v: &mut FieldViolations, field: &str, h: &HealthCheck) {
    let test = &h.test;
    let first = test.first().map(String::as_str);
    if h.disable {
        let ok = matches!(first, None | Some("NONE")) && test.len() <= 1;
        v.check(field, ok, "must be empty or [\"NONE\"] when disable is set");
        return;
    }
    let arity = |ok: bool, reason: &str, v: &mut FieldViolations| v.check(field, ok, reason);
    match first {
        None => v.fail(field, "required unless disable is set: [\"CMD\", program, args...], [\"CMD-SHELL\", script] or [\"NONE\"]"),
        Some("CMD") => arity(test.len() >= 2 && !test[1].is_empty(), "CMD needs a program: [\"CMD\", program, args...]", v),
        Some("CMD-SHELL") => arity(test.len() == 2 && !test[1].is_empty(), "CMD-SHELL takes exactly one script: [\"CMD-SHELL\", script]", v),
        Some("NONE") => arity(test.len() == 1, "NONE takes no arguments", v),
        Some(other) => v.fail(at(field, 0), format!("{other:?} must be CMD, CMD-SHELL or NONE")),
    }
}

/// A quantity field when set: parsed, at least `min`.
fn quantity(
    v: &mut FieldViolations,
    field: String,
    s: &str,
    parse: fn(&str) -> Result<u64, String>,
    min: (u64, &str),
) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let n = v.result(field.clone(), parse(s))?;
    v.check(field, n >= min.0, min.1);
    (n >= min.0).then_some(n)
}

fn resources(v: &mut FieldViolations, q: &str, r: &Resources) {
    let positive = (1, "must be greater than zero");
    let cpus = quantity(v, join(q, "cpus"), &r.cpus, parse_cpus, positive);
    let limit_min = (
        MIN_MEMORY_LIMIT,
        "must be at least 6MiB, the least Docker allows",
    );
    let limit = quantity(
        v,
        join(q, "memory_limit"),
        &r.memory_limit,
        parse_memory,
        limit_min,
    );
    let reservation = quantity(
        v,
        join(q, "memory_reservation"),
        &r.memory_reservation,
        parse_memory,
        positive,
    );
    let cpu_reservation = quantity(
        v,
        join(q, "cpu_reservation"),
        &r.cpu_reservation,
        parse_cpus,
        positive,
    );
    if let (Some(res), Some(lim)) = (reservation, limit) {
        v.check(
            join(q, "memory_reservation"),
            res <= lim,
            format!("must not exceed memory_limit ({lim} bytes), is {res} bytes"),
        );
    }
    if let (Some(res), Some(lim)) = (cpu_reservation, cpus) {
        v.check(
            join(q, "cpu_reservation"),
            res <= lim,
            format!("must not exceed cpus ({lim}m), is {res}m"),
        );
    }
    v.check(
        join(q, "pids_limit"),
        r.pids_limit >= -1,
        "must be a positive count, or 0 or -1 for unlimited",
    );
}

fn ulimits(v: &mut FieldViolations, base: &str, list: &[Ulimit]) {
    if !within_cap(v, base, list.len()) {
        return;
    }
    let mut seen = BTreeMap::new();
    for (i, u) in list.iter().enumerate() {
        let q = at(base, i);
        let field = join(&q, "name");
        if !ULIMITS.contains(&u.name.as_str()) {
            v.fail(
                field,
                format!(
                    "{:?} is not a ulimit Docker knows: one of {}",
                    u.name,
                    ULIMITS.join(", ")
                ),
            );
        } else if let Some(j) = first_seen(&mut seen, u.name.as_str(), i) {
            v.fail(
                field,
                format!("ulimit {:?} is already set at ulimits[{j}]", u.name),
            );
        }
        let unlimited = "must be -1 (unlimited) or more";
        v.check(join(&q, "soft"), u.soft >= -1, unlimited);
        v.check(join(&q, "hard"), u.hard >= -1, unlimited);
        // -1 is unlimited, above every finite value.
        let as_limit = |n: i64| u64::try_from(n).unwrap_or(u64::MAX);
        if u.soft >= -1 && u.hard >= -1 {
            v.check(
                join(&q, "soft"),
                as_limit(u.soft) <= as_limit(u.hard),
                "must not exceed hard",
            );
        }
    }
}

fn devices(v: &mut FieldViolations, base: &str, list: &[DeviceMapping]) {
    if !within_cap(v, base, list.len()) {
        return;
    }
    for (i, d) in list.iter().enumerate() {
        let q = at(base, i);
        v.result(join(&q, "host_path"), absolute_path(&d.host_path));
        v.result(join(&q, "container_path"), absolute_path(&d.container_path));
        v.result(join(&q, "permissions"), device_permissions(&d.permissions));
    }
}

/// Any of `r`, `w`, `m`, each at most once; empty means `rwm`.
fn device_permissions(s: &str) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    let valid = s
        .chars()
        .all(|c| matches!(c, 'r' | 'w' | 'm') && seen.insert(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{s:?} must be any of r, w and m, each at most once"
        ))
    }
}

fn capabilities(v: &mut FieldViolations, base: &str, list: &[String]) {
    if within_cap(v, base, list.len()) {
        for (i, c) in list.iter().enumerate() {
            v.result(at(base, i), capability(c));
        }
    }
}

fn extra_hosts(v: &mut FieldViolations, base: &str, list: &[ExtraHost]) {
    if !within_cap(v, base, list.len()) {
        return;
    }
    for (i, h) in list.iter().enumerate() {
        let q = at(base, i);
        hostname(&join(&q, "hostname"), &h.hostname, v);
        if h.ip.is_empty() {
            v.fail(join(&q, "ip"), REQUIRED);
        } else if h.ip != "host-gateway" {
            v.result(join(&q, "ip"), parse_ip(&h.ip));
        }
    }
}

fn restart(v: &mut FieldViolations, q: &str, r: &RestartPolicy) {
    known_enum::<RestartCondition>(v, join(q, "condition"), r.condition, "restart condition");
    let initial = opt_duration(
        v,
        join(q, "initial_delay"),
        r.initial_delay.as_ref(),
        DurationRule::Positive,
    );
    let max = opt_duration(
        v,
        join(q, "max_delay"),
        r.max_delay.as_ref(),
        DurationRule::Positive,
    );
    opt_duration(
        v,
        join(q, "reset_after"),
        r.reset_after.as_ref(),
        DurationRule::Positive,
    );
    let m = r.multiplier;
    v.check(
        join(q, "multiplier"),
        m == 0.0 || (m.is_finite() && m >= 1.0),
        "must be 0 (the default, 2) or at least 1",
    );
    if let (Some(initial), Some(max)) = (initial, max) {
        v.check(
            join(q, "max_delay"),
            max >= initial,
            format!("must not be shorter than initial_delay ({initial:?})"),
        );
    }
}

fn placement(v: &mut FieldViolations, q: &str, p: &Placement) {
    let base = join(q, "constraints");
    if within_cap(v, &base, p.constraints.len()) {
        for (i, c) in p.constraints.iter().enumerate() {
            constraint(v, &at(&base, i), c);
        }
    }
    let base = join(q, "spreads");
    if within_cap(v, &base, p.spreads.len()) {
        let mut seen = BTreeMap::new();
        for (i, s) in p.spreads.iter().enumerate() {
            let field = join(&at(&base, i), "attribute");
            if v.result(field.clone(), node_attribute(&s.attribute, false))
                .is_some()
                && let Some(j) = first_seen(&mut seen, s.attribute.as_str(), i)
            {
                v.fail(field, format!("already spread over at spreads[{j}]"));
            }
        }
    }
}

fn constraint(v: &mut FieldViolations, q: &str, c: &Constraint) {
    v.result(join(q, "attribute"), node_attribute(&c.attribute, true));
    let op =
        known_enum::<ConstraintOperator>(v, join(q, "operator"), c.operator, "constraint operator");
    let field = join(q, "value");
    v.result(field.clone(), text(&c.value, MAX_VALUE_LEN));
    match op {
        Some(
            ConstraintOperator::Unspecified
            | ConstraintOperator::Equal
            | ConstraintOperator::NotEqual,
        ) => {
            v.check(
                field,
                !c.value.is_empty(),
                "required for EQUAL and NOT_EQUAL",
            );
        }
        Some(ConstraintOperator::In | ConstraintOperator::NotIn) => {
            let ok = c.value.split(',').all(|item| !item.trim().is_empty());
            v.check(
                field,
                ok,
                "must be a comma-separated list of non-empty values for IN and NOT_IN",
            );
        }
        Some(ConstraintOperator::Exists | ConstraintOperator::NotExists) => {
            v.check(
                field,
                c.value.is_empty(),
                "must be empty for EXISTS and NOT_EXISTS",
            );
        }
        None => {}
    }
}

fn fallbacks(v: &mut FieldViolations, base: &str, list: &[FallbackSpec]) {
    if !within_cap(v, base, list.len()) {
        return;
    }
    let mut seen = BTreeMap::new();
    for (i, f) in list.iter().enumerate() {
        let q = at(base, i);
        let field = join(&q, "name");
        name(&field, &f.name, v);
        if !f.name.is_empty()
            && let Some(j) = first_seen(&mut seen, f.name.as_str(), i)
        {
            v.fail(
                field,
                format!("fallback name is already used by fallbacks[{j}]"),
            );
        }
        image(&join(&q, "image"), &f.image, v);
        string_list(v, &join(&q, "command"), &f.command, MAX_ARG_LEN);
        string_list(v, &join(&q, "entrypoint"), &f.entrypoint, MAX_ARG_LEN);
        string_map(v, &join(&q, "env"), &f.env, Keys::Env, MAX_ARG_LEN);
        if let Some(h) = &f.health_check {
            health_check(v, &join(&q, "health_check"), h);
        }
        opt_duration(
            v,
            join(&q, "recovery_interval"),
            f.recovery_interval.as_ref(),
            DurationRule::Positive,
        );
    }
}

fn update(v: &mut FieldViolations, q: &str, u: &UpdatePolicy) {
    opt_duration(
        v,
        join(q, "delay"),
        u.delay.as_ref(),
        DurationRule::NonNegative,
    );
    known_enum::<UpdateOrder>(v, join(q, "order"), u.order, "update order");
    opt_duration(
        v,
        join(q, "monitor"),
        u.monitor.as_ref(),
        DurationRule::Positive,
    );
    opt_duration(
        v,
        join(q, "healthy_deadline"),
        u.healthy_deadline.as_ref(),
        DurationRule::Positive,
    );
    known_enum::<FailureAction>(
        v,
        join(q, "failure_action"),
        u.failure_action,
        "failure action",
    );
    let r = u.max_failure_ratio;
    v.check(
        join(q, "max_failure_ratio"),
        (0.0..=1.0).contains(&r),
        format!("must be within 0..=1, is {r}"),
    );
}

fn reschedule(v: &mut FieldViolations, q: &str, r: &ReschedulePolicy) {
    opt_duration(
        v,
        join(q, "interval"),
        r.interval.as_ref(),
        DurationRule::Positive,
    );
    let delay = opt_duration(
        v,
        join(q, "delay"),
        r.delay.as_ref(),
        DurationRule::NonNegative,
    );
    known_enum::<DelayFunction>(
        v,
        join(q, "delay_function"),
        r.delay_function,
        "delay function",
    );
    let max = opt_duration(
        v,
        join(q, "max_delay"),
        r.max_delay.as_ref(),
        DurationRule::Positive,
    );
    if let (Some(delay), Some(max)) = (delay, max) {
        v.check(
            join(q, "max_delay"),
            max >= delay,
            format!("must not be shorter than delay ({delay:?})"),
        );
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Secret,
    Config,
}

impl FileKind {
    fn noun(self) -> &'static str {
        match self {
            FileKind::Secret => "secret",
            FileKind::Config => "config",
        }
    }

    /// Where a relative target lands in the container.
    fn dir(self) -> &'static str {
        match self {
            FileKind::Secret => "/run/secrets",
            FileKind::Config => "",
        }
    }
}

/// Secret or config references: the object exists, targets do not collide, modes are
/// file modes. A target is a file name (under `/run/secrets` for secrets, `/` for
/// configs) or an absolute path; empty means the object's name.
fn file_references(
    v: &mut FieldViolations,
    base: &str,
    refs: &[FileReference],
    known: &BTreeSet<String>,
    kind: FileKind,
) {
    if !within_cap(v, base, refs.len()) {
        return;
    }
    let mut targets = BTreeMap::new();
    for (i, r) in refs.iter().enumerate() {
        let q = at(base, i);
        let name_field = join(&q, "name");
        let name_ok = v
            .result(name_field.clone(), object_name_syntax(&r.name))
            .is_some();
        if name_ok {
            let noun = kind.noun();
            v.check(
                name_field.clone(),
                known.contains(&r.name),
                format!("{noun} {:?} does not exist", r.name),
            );
        }
        let (field, target) = match r.target.as_str() {
            "" => (name_field, r.name.as_str()),
            t => (join(&q, "target"), t),
        };
        let target_ok = (name_ok || !r.target.is_empty())
            && v.result(field.clone(), file_target(target)).is_some();
        if target_ok {
            let path = if target.starts_with('/') {
                normalize_path(target)
            } else {
                format!("{}/{target}", kind.dir())
            };
            if let Some(j) = first_seen(&mut targets, path.clone(), i) {
                v.fail(
                    field,
                    format!("{path} is already the target of {}s[{j}]", kind.noun()),
                );
            }
        }
        v.check(
            join(&q, "mode"),
            r.mode <= 0o777,
            format!("{:#o} is not a file mode (at most 0o777)", r.mode),
        );
    }
}

/// A file name (no '/', not `.` or `..`) or an absolute path without `..`.
fn file_target(t: &str) -> Result<(), String> {
    if t.starts_with('/') {
        mount_target(t)?;
        if t.split('/').any(|part| part == "..") {
            return Err(format!("{t:?} must not contain '..'"));
        }
        return Ok(());
    }
    if t.is_empty() || t == "." || t == ".." || t.contains('/') {
        return Err(format!(
            "{t:?} must be a file name (without '/') or an absolute path"
        ));
    }
    text(t, FILE_NAME_MAX)
}

fn build(v: &mut FieldViolations, q: &str, b: &BuildSpec) {
    let context = join(q, "context");
    if b.context.is_empty() {
        v.fail(context, REQUIRED);
    } else {
        v.result(context, text(&b.context, MAX_VALUE_LEN));
    }
    let dockerfile = join(q, "dockerfile");
    v.check(
        dockerfile.clone(),
        !b.dockerfile.starts_with('/'),
        "must be relative to the context",
    );
    v.result(dockerfile, text(&b.dockerfile, MAX_VALUE_LEN));
    string_map(v, &join(q, "args"), &b.args, Keys::Env, MAX_ARG_LEN);
    v.result(join(q, "target"), text(&b.target, MAX_NAME_LEN));
}

fn depends_on(v: &mut FieldViolations, base: &str, s: &ServiceSpec, services: &BTreeSet<String>) {
    if !within_cap(v, base, s.depends_on.len()) {
        return;
    }
    let mut seen = BTreeMap::new();
    for (i, d) in s.depends_on.iter().enumerate() {
        let q = at(base, i);
        let field = join(&q, "service");
        if v.result(field.clone(), dns_label(&d.service)).is_some() {
            if d.service == s.name {
                v.fail(field, "a service cannot depend on itself");
            } else if let Some(j) = first_seen(&mut seen, d.service.as_str(), i) {
                v.fail(field, format!("already a dependency at depends_on[{j}]"));
            } else if !services.contains(&d.service) {
                v.fail(field, format!("service {:?} does not exist", d.service));
            }
        }
        known_enum::<DependencyCondition>(
            v,
            join(&q, "condition"),
            d.condition,
            "dependency condition",
        );
    }
}

fn migration_rules(v: &mut FieldViolations, base: &str, rules: &[MigrationRule]) {
    if !within_cap(v, base, rules.len()) {
        return;
    }
    for (i, r) in rules.iter().enumerate() {
        let q = at(base, i);
        migration_trigger(v, &q, r.trigger.as_ref());
        if !r.target_node.is_empty() {
            node_name(&join(&q, "target_node"), &r.target_node, v);
        }
        opt_duration(
            v,
            join(&q, "retry_delay"),
            r.retry_delay.as_ref(),
            DurationRule::Positive,
        );
    }
}

fn migration_trigger(v: &mut FieldViolations, q: &str, trigger: Option<&Trigger>) {
    let selected = "must be true to select this trigger";
    match trigger {
        None => v.fail(
            join(q, "trigger"),
            "one of consecutive_failures, resource_threshold, node_unhealthy or node_cordoned is required",
        ),
        Some(Trigger::ConsecutiveFailures(n)) => {
            v.check(join(q, "consecutive_failures"), *n >= 1, "must be at least 1");
        }
        Some(Trigger::ResourceThreshold(t)) => {
            v.result(join(q, "resource_threshold"), resource_threshold(t));
        }
        Some(Trigger::NodeUnhealthy(on)) => v.check(join(q, "node_unhealthy"), *on, selected),
        Some(Trigger::NodeCordoned(on)) => v.check(join(q, "node_cordoned"), *on, selected),
    }
}

#[cfg(test)]
mod tests;
