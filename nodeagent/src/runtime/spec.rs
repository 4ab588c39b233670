//! Pure conversions from a ServiceSpec to Docker's container configuration, and the
//! quantity parsers they need. Nothing here talks to Docker.

use super::{
    LABEL_ALLOCATION, LABEL_FALLBACK, LABEL_MANAGED, LABEL_SERVICE, LABEL_SLOT, LABEL_SPEC_HASH,
    Prepared, RuntimeError,
};
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HostConfig, Mount, MountTmpfsOptions, MountType, NetworkingConfig, PortBinding,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use constellation_proto::v1::{
    Assignment, Endpoint, NetworkAttachment, Protocol, ServiceSpec, volume_mount,
};
use std::collections::HashMap;

/// Docker's default stop grace period when the spec sets none.
const DEFAULT_STOP_GRACE_SECS: i64 = 10;

/// Parses a memory quantity with Docker's semantics: bytes, or a number with a suffix
/// b, k, m, g, t (powers of 1024), optionally followed by `b`, `i` or `ib`,
/// case-insensitive. Fractions are allowed ("1.5g").
pub fn parse_memory(s: &str) -> Result<i64, RuntimeError> {
    let bad = || RuntimeError::InvalidSpec(format!("invalid memory quantity {s:?}"));
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err(bad());
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let (unit, rest) = match suffix.as_bytes().first() {
        Some(b'k') => (1u64 << 10, &suffix[1..]),
        Some(b'm') => (1 << 20, &suffix[1..]),
        Some(b'g') => (1 << 30, &suffix[1..]),
        Some(b't') => (1 << 40, &suffix[1..]),
        _ => (1, suffix),
    };
    let valid_rest = if unit == 1 {
        matches!(rest, "" | "b")
    } else {
        matches!(rest, "" | "b" | "i" | "ib")
    };
    if !valid_rest {
        return Err(bad());
    }
    if num.is_empty() || num.chars().filter(|&c| c == '.').count() > 1 {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bytes = value * unit as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// Parses a CPU quantity, decimal cores ("1.5") or millicores ("1500m"), into
/// nano-CPUs as Docker's `NanoCpus` wants them.
pub fn parse_cpus(s: &str) -> Result<i64, RuntimeError> {
    let bad = || RuntimeError::InvalidSpec(format!("invalid cpu quantity {s:?}"));
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('m') {
        Some(milli) => (milli, 1_000_000f64),
        None => (t, 1_000_000_000f64),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let nanos = (value * scale).round();
    if !nanos.is_finite() || nanos <= 0.0 || nanos > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(nanos as i64)
}

/// A protobuf duration in nanoseconds, saturating.
pub fn duration_ns(d: &pbjson_types::Duration) -> i64 {
    d.seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(d.nanos))
}

/// Docker's name for a protocol: "tcp", "udp" or "sctp".
pub fn protocol_name(p: i32) -> &'static str {
    match Protocol::try_from(p).unwrap_or(Protocol::Unspecified) {
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
        Protocol::Tcp | Protocol::Unspecified => "tcp",
    }
}

/// The protocol enum for Docker's protocol name.
pub fn protocol_from_name(s: &str) -> Protocol {
    match s {
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// The container name for an assignment: the spec's `container_name` (with the slot
/// appended when the service has more than one replica), or
/// `<service>-<slot>-<first 8 of allocation id>`.
pub fn container_name(a: &Assignment) -> String {
    let (spec, alloc) = parts(a);
    if !spec.container_name.is_empty() {
        if spec.replicas.unwrap_or(1) > 1 {
            return format!("{}-{}", spec.container_name, alloc.slot);
        }
        return spec.container_name.clone();
    }
    let short: String = alloc.id.chars().take(8).collect();
    let service = if spec.name.is_empty() {
        &alloc.service_name
    } else {
        &spec.name
    };
    format!("{service}-{}-{short}", alloc.slot)
}

/// The labels the agent puts on every container it runs.
pub fn our_labels(a: &Assignment) -> HashMap<String, String> {
    let (spec, alloc) = parts(a);
    let service = if spec.name.is_empty() {
        alloc.service_name.clone()
    } else {
        spec.name.clone()
    };
    HashMap::from([
        (LABEL_SERVICE.to_string(), service),
        (LABEL_ALLOCATION.to_string(), alloc.id.clone()),
        (LABEL_SPEC_HASH.to_string(), a.spec_hash.clone()),
        (LABEL_SLOT.to_string(), alloc.slot.to_string()),
        (LABEL_MANAGED.to_string(), "true".to_string()),
    ])
}

/// What a fallback container is known by: its `name`, or its index when unnamed.
pub fn fallback_label(spec: &ServiceSpec, index: usize) -> Option<String> {
    let f = spec.fallbacks.get(index)?;
    Some(if f.name.is_empty() {
        index.to_string()
    } else {
        f.name.clone()
    })
}

/// The assignment of fallback `index` of `a`'s spec: the primary's spec with the
/// fallback's image, command, entrypoint and health check, its env on top of the
/// primary's, the primary's ports, volumes, networks, labels and resources, a name
/// of its own and the `constellation.fallback` label. `None` when there is no such
/// fallback.
pub fn fallback_assignment(a: &Assignment, index: usize) -> Option<Assignment> {
    let primary = a.spec.as_ref()?;
    let fb = primary.fallbacks.get(index)?;
    let label = fallback_label(primary, index)?;
    let mut spec = primary.clone();
    if !fb.image.is_empty() {
        spec.image = fb.image.clone();
        // The primary's build context is for the primary's image.
        spec.build = None;
    }
    spec.command = fb.command.clone();
    spec.entrypoint = fb.entrypoint.clone();
    spec.env
        .extend(fb.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    // The primary's check probes the primary's program; the fallback may not run it.
    spec.health_check = fb.health_check.clone();
    spec.fallbacks.clear();
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    spec.container_name = format!("{}-fallback-{safe}", container_name(a));
    // The name is per allocation already; no slot suffix.
    spec.replicas = Some(1);
    spec.labels.insert(LABEL_FALLBACK.to_string(), label);
    let mut out = a.clone();
    out.spec = Some(spec);
    Some(out)
}

fn parts(a: &Assignment) -> (ServiceSpec, constellation_proto::v1::Allocation) {
    (
        a.spec.clone().unwrap_or_default(),
        a.allocation.clone().unwrap_or_default(),
    )
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn non_empty_vec(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn endpoint_settings(att: &NetworkAttachment) -> EndpointSettings {
    EndpointSettings {
        aliases: non_empty_vec(&att.aliases),
        ipam_config: non_empty(&att.ipv4_address).map(|ip| EndpointIpamConfig {
            ipv4_address: Some(ip),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The networks to connect after create: every attachment but the first, which
/// `container_config` sets as the network mode.
pub fn extra_networks(spec: &ServiceSpec) -> Vec<(String, EndpointSettings)> {
    spec.networks
        .iter()
        .skip(1)
        .map(|att| (att.network.clone(), endpoint_settings(att)))
        .collect()
}

/// Builds Docker's container configuration for an assignment. Pure: it reads only
/// its arguments. `prepared` supplies the image to run and the secret and config
/// files written on the host.
pub fn container_config(
    a: &Assignment,
    prepared: &Prepared,
) -> Result<ContainerCreateBody, RuntimeError> {
    let spec = a
        .spec
        .as_ref()
        .ok_or_else(|| RuntimeError::InvalidSpec("assignment has no spec".into()))?;
    if a.allocation.is_none() {
        return Err(RuntimeError::InvalidSpec(
            "assignment has no allocation".into(),
        ));
    }

    // Ports: published ones go to ExposedPorts and PortBindings; `expose` only to
    // ExposedPorts.
    let mut exposed: Vec<String> = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, protocol_name(p.protocol));
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        let binding = PortBinding {
            host_ip: non_empty(&p.host_ip),
            host_port: Some(p.published_port.map(|n| n.to_string()).unwrap_or_default()),
        };
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    for e in &spec.expose {
        let key = format!("{}/{}", e.port, protocol_name(e.protocol));
        if !exposed.contains(&key) {
            exposed.push(key);
        }
    }

    // Mounts: volumes from the spec, then the secret and config files.
    let mut mounts = Vec::new();
    for v in &spec.volumes {
        let mut m = Mount {
            target: Some(v.target.clone()),
            read_only: Some(v.read_only),
            ..Default::default()
        };
        match &v.source {
            Some(volume_mount::Source::Volume(name)) => {
                m.typ = Some(MountType::VOLUME);
                m.source = Some(name.clone());
            }
            Some(volume_mount::Source::Bind(path)) => {
                m.typ = Some(MountType::BIND);
                m.source = Some(path.clone());
            }
            Some(volume_mount::Source::Tmpfs(t)) => {
                m.typ = Some(MountType::TMPFS);
                let size = if t.size.is_empty() {
                    None
                } else {
                    Some(parse_memory(&t.size)?)
                };
                let mode = (t.mode != 0).then_some(i64::from(t.mode));
                if size.is_some() || mode.is_some() {
                    m.tmpfs_options = Some(MountTmpfsOptions {
                        size_bytes: size,
                        mode,
                        ..Default::default()
                    });
                }
            }
            None => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "volume mount at {:?} has no source",
                    v.target
                )));
            }
        }
        mounts.push(m);
    }
    for f in &prepared.files {
        mounts.push(Mount {
            typ: Some(MountType::BIND),
            source: Some(f.host_path.to_string_lossy().into_owned()),
            target: Some(f.target.clone()),
            read_only: Some(true),
            ..Default::default()
        });
    }

    let healthcheck = spec.health_check.as_ref().map(|h| {
        if h.disable {
            HealthConfig {
                test: Some(vec!["NONE".to_string()]),
                ..Default::default()
            }
        } else {
            HealthConfig {
                test: non_empty_vec(&h.test),
                interval: h.interval.as_ref().map(duration_ns),
                timeout: h.timeout.as_ref().map(duration_ns),
                retries: (h.retries > 0).then_some(i64::from(h.retries)),
                start_period: h.start_period.as_ref().map(duration_ns),
                start_interval: h.start_interval.as_ref().map(duration_ns),
            }
        }
    });

    let (nano_cpus, memory, memory_reservation, pids_limit) = match &spec.resources {
        Some(r) => (
            non_empty(&r.cpus).map(|c| parse_cpus(&c)).transpose()?,
            non_empty(&r.memory_limit)
                .map(|m| parse_memory(&m))
                .transpose()?,
            non_empty(&r.memory_reservation)
                .map(|m| parse_memory(&m))
                .transpose()?,
            (r.pids_limit > 0).then_some(r.pids_limit),
        ),
        None => (None, None, None, None),
    };

    let network_mode = spec.networks.first().map(|n| n.network.clone());
    let networking_config = spec.networks.first().map(|att| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            att.network.clone(),
            endpoint_settings(att),
        )])),
    });

    let stop_timeout = match &spec.stop_grace_period {
        // Docker wants whole seconds; round partial seconds up.
        Some(d) => d.seconds + i64::from(d.nanos > 0),
        None => DEFAULT_STOP_GRACE_SECS,
    };

    let mut labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend(our_labels(a));

    let host_config = HostConfig {
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        network_mode,
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        nano_cpus,
        memory,
        memory_reservation,
        pids_limit,
        ulimits: (!spec.ulimits.is_empty()).then(|| {
            spec.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        devices: (!spec.devices.is_empty()).then(|| {
            spec.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host_path.clone()),
                    path_in_container: Some(if d.container_path.is_empty() {
                        d.host_path.clone()
                    } else {
                        d.container_path.clone()
                    }),
                    cgroup_permissions: Some(if d.permissions.is_empty() {
                        "rwm".to_string()
                    } else {
                        d.permissions.clone()
                    }),
                })
                .collect()
        }),
        cap_add: non_empty_vec(&spec.cap_add),
        cap_drop: non_empty_vec(&spec.cap_drop),
        privileged: Some(spec.privileged),
        extra_hosts: (!spec.extra_hosts.is_empty()).then(|| {
            spec.extra_hosts
                .iter()
                .map(|h| format!("{}:{}", h.hostname, h.ip))
                .collect()
        }),
        readonly_rootfs: Some(spec.read_only_rootfs),
        ..Default::default()
    };

    Ok(ContainerCreateBody {
        image: Some(prepared.image.clone()),
        hostname: non_empty(&spec.hostname),
        cmd: non_empty_vec(&spec.command),
        entrypoint: non_empty_vec(&spec.entrypoint),
        user: non_empty(&spec.user),
        working_dir: non_empty(&spec.working_dir),
        env: (!spec.env.is_empty()).then(|| {
            // BTreeMap: sorted, so the configuration is deterministic.
            spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
        }),
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        tty: Some(spec.tty),
        stop_signal: non_empty(&spec.stop_signal),
        stop_timeout: Some(stop_timeout),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    })
}

/// Fills in each endpoint's `name` from the spec's port of the same container port
/// and protocol.
pub fn name_endpoints(endpoints: &mut [Endpoint], spec: &ServiceSpec) {
    for e in endpoints {
        if let Some(p) = spec.ports.iter().find(|p| {
            p.container_port == e.container_port
                && protocol_name(p.protocol) == protocol_name(e.protocol)
        }) {
            e.name = p.name.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::FileMount;
    use constellation_proto::v1::{
        Allocation, DeviceMapping as PDevice, ExposedPort, ExtraHost, HealthCheck, PortSpec,
        Resources, TmpfsOptions, Ulimit, VolumeMount,
    };
    use pbjson_types::Duration;

    fn assignment(spec: ServiceSpec) -> Assignment {
        Assignment {
            allocation: Some(Allocation {
                id: "0123456789abcdef".into(),
                service_name: spec.name.clone(),
                slot: 2,
                ..Default::default()
            }),
            spec: Some(spec),
            spec_hash: "hash1".into(),
            ..Default::default()
        }
    }

    fn prepared() -> Prepared {
        Prepared {
            image: "img:1".into(),
            files: vec![],
        }
    }

    fn dur(seconds: i64, nanos: i32) -> Option<Duration> {
        Some(Duration { seconds, nanos })
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert_eq!(parse_memory("10b").unwrap(), 10);
        assert_eq!(parse_memory("1k").unwrap(), 1024);
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1gb").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("2T").unwrap(), 2 << 40);
        for bad in ["", "m", "1x", "1kk", "1bb", "-1m", "1.2.3m", "1mbi"] {
            assert!(parse_memory(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse_cpus("1").unwrap(), 1_000_000_000);
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(parse_cpus("1500m").unwrap(), 1_500_000_000);
        assert_eq!(parse_cpus("250m").unwrap(), 250_000_000);
        for bad in ["", "m", "abc", "-1", "0", "1.5x"] {
            assert!(parse_cpus(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn names() {
        let mut spec = ServiceSpec {
            name: "web".into(),
            ..Default::default()
        };
        assert_eq!(container_name(&assignment(spec.clone())), "web-2-01234567");
        spec.container_name = "front".into();
        assert_eq!(container_name(&assignment(spec.clone())), "front");
        spec.replicas = Some(3);
        assert_eq!(container_name(&assignment(spec)), "front-2");
    }

    #[test]
    fn fallback_takes_the_primary_ports_and_labels() {
        use constellation_proto::v1::FallbackSpec;
        let spec = ServiceSpec {
            name: "web".into(),
            image: "web:1".into(),
            command: vec!["serve".into()],
            replicas: Some(3),
            env: [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "1".to_string()),
            ]
            .into(),
            labels: [("traefik.enable".to_string(), "true".to_string())].into(),
            ports: vec![PortSpec {
                container_port: 80,
                published_port: Some(8080),
                ..Default::default()
            }],
            health_check: Some(HealthCheck {
                test: vec!["CMD".into(), "check".into()],
                ..Default::default()
            }),
            fallbacks: vec![
                FallbackSpec {
                    name: "static page".into(),
                    image: "static:1".into(),
                    command: vec!["httpd".into()],
                    env: [("B".to_string(), "2".to_string())].into(),
                    ..Default::default()
                },
                FallbackSpec::default(),
            ],
            ..Default::default()
        };
        let a = assignment(spec);
        let fb = fallback_assignment(&a, 0).unwrap();
        assert_eq!(container_name(&fb), "web-2-01234567-fallback-static-page");
        let c = container_config(&fb, &prepared()).unwrap();
        assert_eq!(c.cmd, Some(vec!["httpd".to_string()]));
        assert!(c.healthcheck.is_none());
        let env = c.env.unwrap();
        assert!(env.contains(&"A=1".to_string()) && env.contains(&"B=2".to_string()));
        let labels = c.labels.unwrap();
        assert_eq!(labels[LABEL_FALLBACK], "static page");
        assert_eq!(labels["traefik.enable"], "true");
        assert_eq!(labels[LABEL_ALLOCATION], "0123456789abcdef");
        assert_eq!(labels[LABEL_SPEC_HASH], "hash1");
        let bindings = c.host_config.unwrap().port_bindings.unwrap();
        assert_eq!(
            bindings["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("8080")
        );
        // An unnamed fallback is known by its index; the image defaults to the primary's.
        let fb1 = fallback_assignment(&a, 1).unwrap();
        assert_eq!(fb1.spec.as_ref().unwrap().image, "web:1");
        assert_eq!(fb1.spec.as_ref().unwrap().labels[LABEL_FALLBACK], "1");
        assert!(fallback_assignment(&a, 2).is_none());
    }

    #[test]
    fn ports_labels_restart_and_basics() {
        let spec = ServiceSpec {
            name: "web".into(),
            image: "ignored".into(),
            command: vec!["httpd".into(), "-f".into()],
            entrypoint: vec!["/bin/sh".into()],
            env: [("B".to_string(), "2".to_string()), ("A".into(), "1".into())].into(),
            labels: [
                ("traefik.enable".to_string(), "true".to_string()),
                (LABEL_SERVICE.to_string(), "spoofed".to_string()),
            ]
            .into(),
            ports: vec![
                PortSpec {
                    container_port: 8080,
                    host_ip: "127.0.0.1".into(),
                    ..Default::default()
                },
                PortSpec {
                    container_port: 53,
                    protocol: Protocol::Udp as i32,
                    published_port: Some(5353),
                    ..Default::default()
                },
            ],
            expose: vec![
                ExposedPort {
                    port: 9000,
                    protocol: Protocol::Sctp as i32,
                },
                ExposedPort {
                    port: 8080,
                    protocol: Protocol::Tcp as i32,
                },
            ],
            extra_hosts: vec![ExtraHost {
                hostname: "db".into(),
                ip: "10.0.0.5".into(),
            }],
            stop_signal: "SIGQUIT".into(),
            stop_grace_period: dur(3, 500),
            read_only_rootfs: true,
            tty: true,
            ..Default::default()
        };
        let c = container_config(&assignment(spec), &prepared()).unwrap();
        assert_eq!(c.image.as_deref(), Some("img:1"));
        assert_eq!(
            c.exposed_ports.unwrap(),
            vec!["8080/tcp", "53/udp", "9000/sctp"]
        );
        assert_eq!(c.env.unwrap(), vec!["A=1", "B=2"]);
        assert_eq!(c.cmd.unwrap(), vec!["httpd", "-f"]);
        assert_eq!(c.entrypoint.unwrap(), vec!["/bin/sh"]);
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.stop_timeout, Some(4));
        assert_eq!(c.tty, Some(true));
        let labels = c.labels.unwrap();
        assert_eq!(labels["traefik.enable"], "true");
        assert_eq!(labels[LABEL_SERVICE], "web");
        assert_eq!(labels[LABEL_ALLOCATION], "0123456789abcdef");
        assert_eq!(labels[LABEL_SPEC_HASH], "hash1");
        assert_eq!(labels[LABEL_SLOT], "2");
        assert_eq!(labels[LABEL_MANAGED], "true");
        let h = c.host_config.unwrap();
        assert_eq!(
            h.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        let pb = h.port_bindings.unwrap();
        assert_eq!(
            pb["8080/tcp"],
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }])
        );
        assert_eq!(
            pb["53/udp"],
            Some(vec![PortBinding {
                host_ip: None,
                host_port: Some("5353".into()),
            }])
        );
        assert!(!pb.contains_key("9000/sctp"));
        assert_eq!(h.extra_hosts.unwrap(), vec!["db:10.0.0.5"]);
        assert_eq!(h.readonly_rootfs, Some(true));
    }

    #[test]
    fn mounts_and_files() {
        let spec = ServiceSpec {
            name: "db".into(),
            volumes: vec![
                VolumeMount {
                    source: Some(volume_mount::Source::Volume("data".into())),
                    target: "/data".into(),
                    ..Default::default()
                },
                VolumeMount {
                    source: Some(volume_mount::Source::Bind("/srv/conf".into())),
                    target: "/conf".into(),
                    read_only: true,
                    ..Default::default()
                },
                VolumeMount {
                    source: Some(volume_mount::Source::Tmpfs(TmpfsOptions {
                        size: "64m".into(),
                        mode: 0o1777,
                    })),
                    target: "/tmp".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let p = Prepared {
            image: "x".into(),
            files: vec![FileMount {
                host_path: "/var/lib/agent/secrets/a/pw".into(),
                target: "/run/secrets/pw".into(),
            }],
        };
        let m = container_config(&assignment(spec), &p)
            .unwrap()
            .host_config
            .unwrap()
            .mounts
            .unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].typ, Some(MountType::VOLUME));
        assert_eq!(m[0].source.as_deref(), Some("data"));
        assert_eq!(m[0].read_only, Some(false));
        assert_eq!(m[1].typ, Some(MountType::BIND));
        assert_eq!(m[1].read_only, Some(true));
        assert_eq!(m[2].typ, Some(MountType::TMPFS));
        let t = m[2].tmpfs_options.as_ref().unwrap();
        assert_eq!(t.size_bytes, Some(64 << 20));
        assert_eq!(t.mode, Some(0o1777));
        assert_eq!(m[3].typ, Some(MountType::BIND));
        assert_eq!(m[3].target.as_deref(), Some("/run/secrets/pw"));
        assert_eq!(m[3].read_only, Some(true));
    }

    #[test]
    fn health_check_in_nanoseconds() {
        let spec = ServiceSpec {
            health_check: Some(HealthCheck {
                test: vec!["CMD".into(), "true".into()],
                interval: dur(1, 0),
                timeout: dur(0, 500_000_000),
                retries: 5,
                start_period: dur(30, 0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let h = container_config(&assignment(spec), &prepared())
            .unwrap()
            .healthcheck
            .unwrap();
        assert_eq!(h.test.unwrap(), vec!["CMD", "true"]);
        assert_eq!(h.interval, Some(1_000_000_000));
        assert_eq!(h.timeout, Some(500_000_000));
        assert_eq!(h.retries, Some(5));
        assert_eq!(h.start_period, Some(30_000_000_000));
        assert_eq!(h.start_interval, None);

        let disabled = ServiceSpec {
            health_check: Some(HealthCheck {
                disable: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let h = container_config(&assignment(disabled), &prepared())
            .unwrap()
            .healthcheck
            .unwrap();
        assert_eq!(h.test.unwrap(), vec!["NONE"]);
    }

    #[test]
    fn resources_and_host_settings() {
        let spec = ServiceSpec {
            resources: Some(Resources {
                cpus: "1500m".into(),
                memory_limit: "512Mi".into(),
                memory_reservation: "256m".into(),
                pids_limit: 100,
                ..Default::default()
            }),
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048,
            }],
            devices: vec![PDevice {
                host_path: "/dev/fuse".into(),
                ..Default::default()
            }],
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["MKNOD".into()],
            privileged: true,
            ..Default::default()
        };
        let h = container_config(&assignment(spec), &prepared())
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(h.nano_cpus, Some(1_500_000_000));
        assert_eq!(h.memory, Some(512 << 20));
        assert_eq!(h.memory_reservation, Some(256 << 20));
        assert_eq!(h.pids_limit, Some(100));
        assert_eq!(h.ulimits.unwrap()[0].hard, Some(2048));
        let d = &h.devices.unwrap()[0];
        assert_eq!(d.path_in_container.as_deref(), Some("/dev/fuse"));
        assert_eq!(d.cgroup_permissions.as_deref(), Some("rwm"));
        assert_eq!(h.cap_add.unwrap(), vec!["NET_ADMIN"]);
        assert_eq!(h.cap_drop.unwrap(), vec!["MKNOD"]);
        assert_eq!(h.privileged, Some(true));

        let bad = ServiceSpec {
            resources: Some(Resources {
                memory_limit: "lots".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(container_config(&assignment(bad), &prepared()).is_err());
    }

    #[test]
    fn networks() {
        let spec = ServiceSpec {
            networks: vec![
                NetworkAttachment {
                    network: "front".into(),
                    aliases: vec!["web".into()],
                    ipv4_address: "172.28.0.10".into(),
                },
                NetworkAttachment {
                    network: "back".into(),
                    aliases: vec![],
                    ipv4_address: String::new(),
                },
            ],
            ..Default::default()
        };
        let c = container_config(&assignment(spec.clone()), &prepared()).unwrap();
        assert_eq!(
            c.host_config.unwrap().network_mode.as_deref(),
            Some("front")
        );
        let eps = c.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps["front"].aliases.as_ref().unwrap(), &vec!["web"]);
        assert_eq!(
            eps["front"]
                .ipam_config
                .as_ref()
                .unwrap()
                .ipv4_address
                .as_deref(),
            Some("172.28.0.10")
        );
        let extra = extra_networks(&spec);
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0].0, "back");
    }
}
