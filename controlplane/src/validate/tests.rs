//! One test per validation rule, each asserting the field path it reports.

use super::*;
use constellation_proto::v1::{Dependency, Spread, TmpfsOptions};
use proptest::prelude::*;

fn secs(seconds: i64) -> Option<Duration> {
    Some(Duration { seconds, nanos: 0 })
}

fn nanos(nanos: i32) -> Option<Duration> {
    Some(Duration { seconds: 0, nanos })
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn known() -> KnownNames {
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
    KnownNames {
        secrets: set(&["db-password", "api-key"]),
        configs: set(&["nginx.conf"]),
        services: set(&["db", "cache", "web"]),
    }
}

fn base() -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        image: "nginx:1.27".into(),
        ..Default::default()
    }
}

fn violations_with(spec: &ServiceSpec, known: &KnownNames) -> Vec<(String, String)> {
    match service_spec(spec, known) {
        Ok(()) => Vec::new(),
        Err(Error::InvalidArgument(v)) => v.0.into_iter().map(|f| (f.field, f.reason)).collect(),
        Err(other) => panic!("unexpected error {other}"),
    }
}

fn violations(spec: &ServiceSpec) -> Vec<(String, String)> {
    violations_with(spec, &known())
}

fn assert_violation(spec: &ServiceSpec, path: &str) {
    let found = violations(spec);
    assert!(
        found.iter().any(|(field, _)| field == path),
        "expected a violation of {path}, got {found:#?}"
    );
}

fn port(container_port: u32) -> PortSpec {
    PortSpec {
        container_port,
        ..Default::default()
    }
}

fn published(container_port: u32, host: u32, host_ip: &str) -> PortSpec {
    PortSpec {
        container_port,
        published_port: Some(host),
        host_ip: host_ip.into(),
        ..Default::default()
    }
}

fn volume(source: Source, target: &str) -> VolumeMount {
    VolumeMount {
        source: Some(source),
        target: target.into(),
        ..Default::default()
    }
}

fn health(test: &[&str]) -> HealthCheck {
    HealthCheck {
        test: strings(test),
        ..Default::default()
    }
}

fn file_ref(name: &str, target: &str, mode: u32) -> FileReference {
    FileReference {
        name: name.into(),
        target: target.into(),
        mode,
    }
}

fn rule(trigger: Trigger) -> MigrationRule {
    MigrationRule {
        trigger: Some(trigger),
        ..Default::default()
    }
}

fn full_spec() -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        image: "registry.example.com:5000/team/web-app:v1.2.3".into(),
        container_name: "web_main.1".into(),
        hostname: "web-1.internal".into(),
        command: strings(&["serve", "--port", "8080"]),
        entrypoint: strings(&["/bin/app"]),
        user: "1000:1000".into(),
        working_dir: "/srv".into(),
        env: map(&[("RUST_LOG", "info"), ("DATABASE_URL", "postgres://db/app")]),
        labels: map(&[("traefik.enable", "true"), ("team", "platform")]),
        ports: vec![
            PortSpec {
                container_port: 8080,
                protocol: Protocol::Tcp as i32,
                published_port: Some(80),
                host_ip: "0.0.0.0".into(),
                name: "http".into(),
            },
            PortSpec {
                container_port: 8080,
                protocol: Protocol::Udp as i32,
                published_port: Some(80),
                host_ip: String::new(),
                name: "quic".into(),
            },
            published(9090, 9090, "::1"),
        ],
        expose: vec![ExposedPort {
            port: 9100,
            protocol: Protocol::Unspecified as i32,
        }],
        volumes: vec![
            volume(Source::Volume("web-data".into()), "/data"),
            volume(Source::Bind("/etc/ssl/certs".into()), "/etc/ssl/certs"),
            volume(
                Source::Tmpfs(TmpfsOptions {
                    size: "64m".into(),
                    mode: 0o1777,
                }),
                "/tmp",
            ),
        ],
        networks: vec![
            NetworkAttachment {
                network: "backend".into(),
                aliases: strings(&["web", "www.internal"]),
                ipv4_address: "172.28.0.10".into(),
            },
            NetworkAttachment {
                network: "traefik-public".into(),
                ..Default::default()
            },
        ],
        network_definitions: vec![NetworkSpec {
            name: "backend".into(),
            driver: "bridge".into(),
            subnet: "172.28.0.0/16".into(),
            gateway: "172.28.0.1".into(),
            labels: map(&[("purpose", "db traffic")]),
            ..Default::default()
        }],
        health_check: Some(HealthCheck {
            test: strings(&["CMD", "curl", "-f", "http://localhost:8080/health"]),
            interval: secs(30),
            timeout: secs(5),
            retries: 3,
            start_period: secs(0),
            start_interval: nanos(5_000_000),
            disable: false,
        }),
        resources: Some(Resources {
            cpus: "1.5".into(),
            memory_limit: "512Mi".into(),
            memory_reservation: "256m".into(),
            cpu_reservation: "500m".into(),
            pids_limit: 512,
        }),
        ulimits: vec![Ulimit {
            name: "nofile".into(),
            soft: 1024,
            hard: -1,
        }],
        devices: vec![DeviceMapping {
            host_path: "/dev/fuse".into(),
            container_path: "/dev/fuse".into(),
            permissions: "rw".into(),
        }],
        cap_add: strings(&["NET_ADMIN", "CAP_SYS_PTRACE"]),
        cap_drop: strings(&["ALL"]),
        extra_hosts: vec![
            ExtraHost {
                hostname: "metadata.local".into(),
                ip: "169.254.169.254".into(),
            },
            ExtraHost {
                hostname: "host.docker.internal".into(),
                ip: "host-gateway".into(),
            },
        ],
        restart: Some(RestartPolicy {
            condition: RestartCondition::OnFailure as i32,
            initial_delay: secs(10),
            max_delay: secs(300),
            multiplier: 2.0,
            reset_after: secs(600),
            max_attempts: Some(5),
        }),
        replicas: Some(3),
        placement: Some(Placement {
            constraints: vec![
                Constraint {
                    attribute: "node.labels.zone".into(),
                    operator: ConstraintOperator::In as i32,
                    value: "eu-1,eu-2".into(),
                },
                Constraint {
                    attribute: "node.labels.gpu".into(),
                    operator: ConstraintOperator::NotExists as i32,
                    value: String::new(),
                },
            ],
            spreads: vec![Spread {
                attribute: "node.labels.zone".into(),
            }],
            max_per_node: 2,
        }),
        fallbacks: vec![FallbackSpec {
            name: "maintenance".into(),
            image: "ghcr.io/acme/maintenance-page@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            env: map(&[("MESSAGE", "back soon")]),
            health_check: Some(health(&["CMD-SHELL", "wget -q -O- localhost || exit 1"])),
            recovery_interval: secs(60),
            ..Default::default()
        }],
        update: Some(UpdatePolicy {
            parallelism: 1,
            delay: secs(0),
            order: UpdateOrder::StartFirst as i32,
            monitor: secs(5),
            healthy_deadline: secs(120),
            failure_action: FailureAction::Rollback as i32,
            max_failure_ratio: 0.25,
        }),
        reschedule: Some(ReschedulePolicy {
            attempts: 3,
            interval: secs(3600),
            delay: secs(0),
            delay_function: DelayFunction::Exponential as i32,
            max_delay: secs(300),
            unlimited: false,
        }),
        secrets: vec![
            file_ref("db-password", "", 0o400),
            file_ref("api-key", "/etc/app/api-key", 0o440),
        ],
        configs: vec![file_ref("nginx.conf", "/etc/nginx/nginx.conf", 0o444)],
        build: None,
        depends_on: vec![Dependency {
            service: "db".into(),
            condition: DependencyCondition::Healthy as i32,
        }],
        pull_policy: PullPolicy::Always as i32,
        pull_timeout: secs(300),
        stop_signal: "SIGQUIT".into(),
        stop_grace_period: secs(30),
        read_only_rootfs: true,
        migration_rules: vec![
            MigrationRule {
                target_node: "node-2.eu".into(),
                priority: 1,
                max_retries: 3,
                retry_delay: secs(30),
                trigger: Some(Trigger::ResourceThreshold("memory>=90%".into())),
            },
            rule(Trigger::NodeCordoned(true)),
            rule(Trigger::ConsecutiveFailures(5)),
        ],
        ..Default::default()
    }
}

#[test]
fn full_valid_spec_passes() {
    assert_eq!(violations(&full_spec()), Vec::<(String, String)>::new());
}

#[test]
fn minimal_spec_passes() {
    assert_eq!(violations(&base()), Vec::<(String, String)>::new());
}

#[test]
fn reports_every_mistake_at_once() {
    let mut s = base();
    s.name = "Web".into();
    s.ports = vec![port(8080), port(0)];
    s.resources = Some(Resources {
        memory_limit: "1x".into(),
        ..Default::default()
    });
    let found = violations(&s);
    let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.name",
            "spec.ports[1].container_port",
            "spec.resources.memory_limit"
        ],
        "{found:#?}"
    );
}

#[test]
fn reasons_are_specific() {
    let mut s = base();
    s.ports = vec![port(70000)];
    let found = violations(&s);
    assert_eq!(
        found,
        vec![(
            "spec.ports[0].container_port".to_string(),
            "must be within 1..=65535, is 70000".to_string()
        )]
    );
}

#[test]
fn apply_service_requires_a_spec() {
    let err = apply_service(&ApplyServiceRequest::default(), &known()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(v) if v.0[0].field == "spec"));
    let req = ApplyServiceRequest {
        spec: Some(base()),
        ..Default::default()
    };
    apply_service(&req, &known()).unwrap();
}

/// One test per rule: mutate a valid spec, expect a violation at `path`.
macro_rules! rule_tests {
    ($($test:ident: $path:literal => |$s:ident| $body:block)*) => {
        $(
            #[test]
            fn $test() {
                let mut $s = base();
                $body
                assert_violation(&$s, $path);
            }
        )*
    };
}

rule_tests! {
    name_required: "spec.name" => |s| { s.name.clear(); }
    name_is_dns_label: "spec.name" => |s| { s.name = "web_1".into(); }
    name_starts_with_letter: "spec.name" => |s| { s.name = "1web".into(); }
    name_not_ending_with_dash: "spec.name" => |s| { s.name = "web-".into(); }
    name_at_most_63: "spec.name" => |s| { s.name = "a".repeat(64); }
    container_name_docker_syntax: "spec.container_name" => |s| { s.container_name = "-web".into(); }
    container_name_two_chars: "spec.container_name" => |s| { s.container_name = "w".into(); }
    hostname_rfc1123: "spec.hostname" => |s| { s.hostname = "web_1".into(); }
    hostname_at_most_64: "spec.hostname" => |s| { s.hostname = format!("{}.{}", "a".repeat(40), "b".repeat(40)); }
    image_required: "spec.image" => |s| { s.image.clear(); }
    image_lower_case: "spec.image" => |s| { s.image = "Nginx:latest".into(); }
    image_bad_tag: "spec.image" => |s| { s.image = "nginx:-x".into(); }
    image_bad_digest: "spec.image" => |s| { s.image = "nginx@sha256:abc".into(); }
    command_no_nul: "spec.command[1]" => |s| { s.command = strings(&["run", "a\0b"]); }
    entrypoint_bounded: "spec.entrypoint[0]" => |s| { s.entrypoint = vec!["x".repeat(MAX_ARG_LEN + 1)]; }
    command_count_capped: "spec.command" => |s| { s.command = vec!["x".into(); MAX_ITEMS + 1]; }
    user_bounded: "spec.user" => |s| { s.user = "u".repeat(300); }
    working_dir_absolute: "spec.working_dir" => |s| { s.working_dir = "srv".into(); }
    env_key_without_equals: "spec.env[\"A=B\"]" => |s| { s.env = map(&[("A=B", "1")]); }
    env_key_not_empty: "spec.env[\"\"]" => |s| { s.env = map(&[("", "1")]); }
    env_value_no_nul: "spec.env[\"A\"]" => |s| { s.env = map(&[("A", "x\0")]); }
    label_key_not_empty: "spec.labels[\"\"]" => |s| { s.labels = map(&[("", "x")]); }
    label_prefix_reserved: "spec.labels[\"constellation.owner\"]" => |s| { s.labels = map(&[("constellation.owner", "me")]); }
    labels_count_capped: "spec.labels" => |s| {
        s.labels = (0..=MAX_ITEMS).map(|i| (format!("k{i}"), String::new())).collect();
    }
    port_container_in_range: "spec.ports[0].container_port" => |s| { s.ports = vec![port(0)]; }
    port_published_not_zero: "spec.ports[0].published_port" => |s| { s.ports = vec![published(80, 0, "")]; }
    port_published_in_range: "spec.ports[0].published_port" => |s| { s.ports = vec![published(80, 65536, "")]; }
    port_protocol_known: "spec.ports[0].protocol" => |s| { s.ports = vec![PortSpec { protocol: 9, ..port(80) }]; }
    port_host_ip_parses: "spec.ports[0].host_ip" => |s| { s.ports = vec![published(80, 80, "localhost")]; }
    port_container_unique_per_protocol: "spec.ports[1].container_port" => |s| {
        s.ports = vec![port(80), PortSpec { protocol: Protocol::Tcp as i32, ..port(80) }];
    }
    port_published_unique: "spec.ports[1].published_port" => |s| {
        s.ports = vec![published(80, 8080, "10.0.0.1"), published(81, 8080, "10.0.0.1")];
    }
    port_published_overlaps_wildcard: "spec.ports[1].published_port" => |s| {
        s.ports = vec![published(80, 8080, ""), published(81, 8080, "10.0.0.1")];
    }
    port_name_is_label: "spec.ports[0].name" => |s| { s.ports = vec![PortSpec { name: "HTTP".into(), ..port(80) }]; }
    port_name_unique: "spec.ports[1].name" => |s| {
        s.ports = vec![PortSpec { name: "http".into(), ..port(80) }, PortSpec { name: "http".into(), ..port(81) }];
    }
    expose_in_range: "spec.expose[0].port" => |s| { s.expose = vec![ExposedPort { port: 0, protocol: 0 }]; }
    expose_protocol_known: "spec.expose[0].protocol" => |s| { s.expose = vec![ExposedPort { port: 80, protocol: -1 }]; }
    expose_unique_per_protocol: "spec.expose[1].port" => |s| {
        s.expose = vec![ExposedPort { port: 80, protocol: 0 }, ExposedPort { port: 80, protocol: 1 }];
    }
    volume_source_required: "spec.volumes[0].source" => |s| {
        s.volumes = vec![VolumeMount { target: "/data".into(), ..Default::default() }];
    }
    volume_target_absolute: "spec.volumes[0].target" => |s| { s.volumes = vec![volume(Source::Volume("data".into()), "data")]; }
    volume_target_not_root: "spec.volumes[0].target" => |s| { s.volumes = vec![volume(Source::Volume("data".into()), "/")]; }
    volume_target_unique: "spec.volumes[1].target" => |s| {
        s.volumes = vec![volume(Source::Volume("a1".into()), "/data"), volume(Source::Volume("b1".into()), "/data/")];
    }
    volume_bind_absolute: "spec.volumes[0].bind" => |s| { s.volumes = vec![volume(Source::Bind("./data".into()), "/data")]; }
    volume_name_docker_syntax: "spec.volumes[0].volume" => |s| { s.volumes = vec![volume(Source::Volume("my vol".into()), "/data")]; }
    volume_tmpfs_size_is_memory: "spec.volumes[0].tmpfs.size" => |s| {
        s.volumes = vec![volume(Source::Tmpfs(TmpfsOptions { size: "64q".into(), mode: 0 }), "/tmp")];
    }
    volume_driver_only_for_named: "spec.volumes[0].driver" => |s| {
        s.volumes = vec![VolumeMount { driver: "nfs".into(), ..volume(Source::Bind("/srv".into()), "/srv") }];
    }
    network_required: "spec.networks[0].network" => |s| { s.networks = vec![NetworkAttachment::default()]; }
    network_attached_once: "spec.networks[1].network" => |s| {
        let a = NetworkAttachment { network: "front".into(), ..Default::default() };
        s.networks = vec![a.clone(), a];
    }
    network_host_alone: "spec.networks[0].network" => |s| {
        s.networks = vec![
            NetworkAttachment { network: "host".into(), ..Default::default() },
            NetworkAttachment { network: "front".into(), ..Default::default() },
        ];
    }
    network_alias_is_hostname: "spec.networks[0].aliases[0]" => |s| {
        s.networks = vec![NetworkAttachment { network: "front".into(), aliases: strings(&["bad alias"]), ..Default::default() }];
    }
    network_ipv4_parses: "spec.networks[0].ipv4_address" => |s| {
        s.networks = vec![NetworkAttachment { network: "front".into(), ipv4_address: "::1".into(), ..Default::default() }];
    }
    network_ipv4_inside_subnet: "spec.networks[0].ipv4_address" => |s| {
        s.network_definitions = vec![NetworkSpec { name: "back".into(), subnet: "10.1.0.0/24".into(), ..Default::default() }];
        s.networks = vec![NetworkAttachment { network: "back".into(), ipv4_address: "10.2.0.5".into(), ..Default::default() }];
    }
    network_definition_name_syntax: "spec.network_definitions[0].name" => |s| {
        s.network_definitions = vec![NetworkSpec { name: "_x".into(), ..Default::default() }];
    }
    network_definition_unique: "spec.network_definitions[1].name" => |s| {
        let d = NetworkSpec { name: "back".into(), ..Default::default() };
        s.network_definitions = vec![d.clone(), d];
    }
    network_definition_not_predefined: "spec.network_definitions[0].name" => |s| {
        s.network_definitions = vec![NetworkSpec { name: "bridge".into(), ..Default::default() }];
    }
    network_subnet_is_cidr: "spec.network_definitions[0].subnet" => |s| {
        s.network_definitions = vec![NetworkSpec { name: "back".into(), subnet: "10.0.0.0/33".into(), ..Default::default() }];
    }
    network_gateway_inside_subnet: "spec.network_definitions[0].gateway" => |s| {
        s.network_definitions = vec![NetworkSpec {
            name: "back".into(), subnet: "10.0.0.0/24".into(), gateway: "10.0.1.1".into(), ..Default::default()
        }];
    }
    network_gateway_needs_subnet: "spec.network_definitions[0].gateway" => |s| {
        s.network_definitions = vec![NetworkSpec { name: "back".into(), gateway: "10.0.1.1".into(), ..Default::default() }];
    }
    health_test_required: "spec.health_check.test" => |s| { s.health_check = Some(HealthCheck::default()); }
    health_test_kind: "spec.health_check.test[0]" => |s| { s.health_check = Some(health(&["curl", "x"])); }
    health_cmd_needs_program: "spec.health_check.test" => |s| { s.health_check = Some(health(&["CMD"])); }
    health_cmd_shell_one_script: "spec.health_check.test" => |s| { s.health_check = Some(health(&["CMD-SHELL", "a", "b"])); }
    health_disable_conflicts_with_test: "spec.health_check.test" => |s| {
        s.health_check = Some(HealthCheck { disable: true, ..health(&["CMD", "true"]) });
    }
    health_interval_at_least_1ms: "spec.health_check.interval" => |s| {
        s.health_check = Some(HealthCheck { interval: nanos(999), ..health(&["NONE"]) });
    }
    health_timeout_not_negative: "spec.health_check.timeout" => |s| {
        s.health_check = Some(HealthCheck { timeout: secs(-1), ..health(&["NONE"]) });
    }
    health_start_period_at_least_1ms: "spec.health_check.start_period" => |s| {
        s.health_check = Some(HealthCheck { start_period: nanos(10), ..health(&["NONE"]) });
    }
    health_start_interval_positive: "spec.health_check.start_interval" => |s| {
        s.health_check = Some(HealthCheck { start_interval: secs(0), ..health(&["NONE"]) });
    }
    resources_cpus_parse: "spec.resources.cpus" => |s| { s.resources = Some(Resources { cpus: "two".into(), ..Default::default() }); }
    resources_cpus_positive: "spec.resources.cpus" => |s| { s.resources = Some(Resources { cpus: "0".into(), ..Default::default() }); }
    resources_cpu_reservation_parse: "spec.resources.cpu_reservation" => |s| {
        s.resources = Some(Resources { cpu_reservation: "0.0001".into(), ..Default::default() });
    }
    resources_cpu_reservation_within_cpus: "spec.resources.cpu_reservation" => |s| {
        s.resources = Some(Resources { cpus: "1".into(), cpu_reservation: "2".into(), ..Default::default() });
    }
    resources_memory_limit_parse: "spec.resources.memory_limit" => |s| {
        s.resources = Some(Resources { memory_limit: "lots".into(), ..Default::default() });
    }
    resources_memory_limit_at_least_6mib: "spec.resources.memory_limit" => |s| {
        s.resources = Some(Resources { memory_limit: "4m".into(), ..Default::default() });
    }
    resources_memory_reservation_parse: "spec.resources.memory_reservation" => |s| {
        s.resources = Some(Resources { memory_reservation: "-1".into(), ..Default::default() });
    }
    resources_memory_reservation_within_limit: "spec.resources.memory_reservation" => |s| {
        s.resources = Some(Resources { memory_limit: "1g".into(), memory_reservation: "2g".into(), ..Default::default() });
    }
    resources_pids_limit: "spec.resources.pids_limit" => |s| { s.resources = Some(Resources { pids_limit: -2, ..Default::default() }); }
    ulimit_name_known: "spec.ulimits[0].name" => |s| { s.ulimits = vec![Ulimit { name: "files".into(), soft: 1, hard: 1 }]; }
    ulimit_name_unique: "spec.ulimits[1].name" => |s| {
        let u = Ulimit { name: "nproc".into(), soft: 1, hard: 1 };
        s.ulimits = vec![u.clone(), u];
    }
    ulimit_soft_within_hard: "spec.ulimits[0].soft" => |s| { s.ulimits = vec![Ulimit { name: "nofile".into(), soft: 10, hard: 5 }]; }
    ulimit_unlimited_soft_over_finite_hard: "spec.ulimits[0].soft" => |s| {
        s.ulimits = vec![Ulimit { name: "nofile".into(), soft: -1, hard: 5 }];
    }
    ulimit_hard_at_least_minus_one: "spec.ulimits[0].hard" => |s| { s.ulimits = vec![Ulimit { name: "core".into(), soft: 0, hard: -2 }]; }
    device_host_path_absolute: "spec.devices[0].host_path" => |s| {
        s.devices = vec![DeviceMapping { host_path: "dev/fuse".into(), container_path: "/dev/fuse".into(), ..Default::default() }];
    }
    device_container_path_absolute: "spec.devices[0].container_path" => |s| {
        s.devices = vec![DeviceMapping { host_path: "/dev/fuse".into(), ..Default::default() }];
    }
    device_permissions_rwm: "spec.devices[0].permissions" => |s| {
        s.devices = vec![DeviceMapping { host_path: "/dev/a".into(), container_path: "/dev/a".into(), permissions: "rwx".into() }];
    }
    device_permissions_once_each: "spec.devices[0].permissions" => |s| {
        s.devices = vec![DeviceMapping { host_path: "/dev/a".into(), container_path: "/dev/a".into(), permissions: "rr".into() }];
    }
    cap_add_syntax: "spec.cap_add[0]" => |s| { s.cap_add = strings(&["net_admin"]); }
    cap_drop_syntax: "spec.cap_drop[1]" => |s| { s.cap_drop = strings(&["ALL", "CAP-X"]); }
    extra_host_hostname: "spec.extra_hosts[0].hostname" => |s| { s.extra_hosts = vec![ExtraHost { hostname: "a b".into(), ip: "10.0.0.1".into() }]; }
    extra_host_ip: "spec.extra_hosts[0].ip" => |s| { s.extra_hosts = vec![ExtraHost { hostname: "db".into(), ip: "10.0.0".into() }]; }
    restart_condition_known: "spec.restart.condition" => |s| { s.restart = Some(RestartPolicy { condition: 7, ..Default::default() }); }
    restart_initial_delay_positive: "spec.restart.initial_delay" => |s| {
        s.restart = Some(RestartPolicy { initial_delay: secs(0), ..Default::default() });
    }
    restart_reset_after_well_formed: "spec.restart.reset_after" => |s| {
        s.restart = Some(RestartPolicy { reset_after: Some(Duration { seconds: 1, nanos: 1_000_000_000 }), ..Default::default() });
    }
    restart_multiplier_at_least_one: "spec.restart.multiplier" => |s| { s.restart = Some(RestartPolicy { multiplier: 0.5, ..Default::default() }); }
    restart_multiplier_finite: "spec.restart.multiplier" => |s| { s.restart = Some(RestartPolicy { multiplier: f64::NAN, ..Default::default() }); }
    restart_max_delay_not_below_initial: "spec.restart.max_delay" => |s| {
        s.restart = Some(RestartPolicy { initial_delay: secs(60), max_delay: secs(10), ..Default::default() });
    }
    replicas_bounded: "spec.replicas" => |s| { s.replicas = Some(MAX_REPLICAS + 1); }
    constraint_attribute: "spec.placement.constraints[0].attribute" => |s| {
        s.placement = Some(Placement {
            constraints: vec![Constraint { attribute: "node.zone".into(), value: "a".into(), ..Default::default() }],
            ..Default::default()
        });
    }
    constraint_label_key_required: "spec.placement.constraints[0].attribute" => |s| {
        s.placement = Some(Placement {
            constraints: vec![Constraint { attribute: "node.labels.".into(), value: "a".into(), ..Default::default() }],
            ..Default::default()
        });
    }
    constraint_operator_known: "spec.placement.constraints[0].operator" => |s| {
        s.placement = Some(Placement {
            constraints: vec![Constraint { attribute: "node.name".into(), operator: 42, value: "a".into() }],
            ..Default::default()
        });
    }
    constraint_value_required_for_equal: "spec.placement.constraints[0].value" => |s| {
        s.placement = Some(Placement {
            constraints: vec![Constraint { attribute: "node.id".into(), operator: 1, value: String::new() }],
            ..Default::default()
        });
    }
    constraint_value_items_for_in: "spec.placement.constraints[0].value" => |s| {
        s.placement = Some(Placement {
            constraints: vec![Constraint { attribute: "node.name".into(), operator: 3, value: "a,,b".into() }],
            ..Default::default()
        });
    }
    constraint_value_empty_for_exists: "spec.placement.constraints[0].value" => |s| {
        s.placement = Some(Placement {
            constraints: vec![Constraint { attribute: "node.labels.ssd".into(), operator: 5, value: "yes".into() }],
            ..Default::default()
        });
    }
    spread_attribute: "spec.placement.spreads[0].attribute" => |s| {
        s.placement = Some(Placement { spreads: vec![Spread { attribute: "node.id".into() }], ..Default::default() });
    }
    spread_unique: "spec.placement.spreads[1].attribute" => |s| {
        let sp = Spread { attribute: "node.labels.zone".into() };
        s.placement = Some(Placement { spreads: vec![sp.clone(), sp], ..Default::default() });
    }
    fallback_name_label: "spec.fallbacks[0].name" => |s| {
        s.fallbacks = vec![FallbackSpec { name: "Maint".into(), image: "nginx".into(), ..Default::default() }];
    }
    fallback_name_unique: "spec.fallbacks[1].name" => |s| {
        let f = FallbackSpec { name: "maint".into(), image: "nginx".into(), ..Default::default() };
        s.fallbacks = vec![f.clone(), f];
    }
    fallback_image_required: "spec.fallbacks[0].image" => |s| {
        s.fallbacks = vec![FallbackSpec { name: "maint".into(), ..Default::default() }];
    }
    fallback_image_syntax: "spec.fallbacks[0].image" => |s| {
        s.fallbacks = vec![FallbackSpec { name: "maint".into(), image: "nginx::1".into(), ..Default::default() }];
    }
    fallback_health_check: "spec.fallbacks[0].health_check.test" => |s| {
        s.fallbacks = vec![FallbackSpec {
            name: "maint".into(), image: "nginx".into(), health_check: Some(health(&["CMD-SHELL"])), ..Default::default()
        }];
    }
    fallback_env_key: "spec.fallbacks[0].env[\"\"]" => |s| {
        s.fallbacks = vec![FallbackSpec { name: "maint".into(), image: "nginx".into(), env: map(&[("", "x")]), ..Default::default() }];
    }
    fallback_recovery_interval_positive: "spec.fallbacks[0].recovery_interval" => |s| {
        s.fallbacks = vec![FallbackSpec { name: "maint".into(), image: "nginx".into(), recovery_interval: secs(0), ..Default::default() }];
    }
    update_ratio_within_unit: "spec.update.max_failure_ratio" => |s| {
        s.update = Some(UpdatePolicy { max_failure_ratio: 1.5, ..Default::default() });
    }
    update_order_known: "spec.update.order" => |s| { s.update = Some(UpdatePolicy { order: 3, ..Default::default() }); }
    update_failure_action_known: "spec.update.failure_action" => |s| { s.update = Some(UpdatePolicy { failure_action: 9, ..Default::default() }); }
    update_monitor_positive: "spec.update.monitor" => |s| { s.update = Some(UpdatePolicy { monitor: secs(0), ..Default::default() }); }
    update_healthy_deadline_positive: "spec.update.healthy_deadline" => |s| {
        s.update = Some(UpdatePolicy { healthy_deadline: secs(-5), ..Default::default() });
    }
    update_delay_not_negative: "spec.update.delay" => |s| { s.update = Some(UpdatePolicy { delay: nanos(-1), ..Default::default() }); }
    reschedule_interval_positive: "spec.reschedule.interval" => |s| {
        s.reschedule = Some(ReschedulePolicy { interval: secs(0), ..Default::default() });
    }
    reschedule_delay_function_known: "spec.reschedule.delay_function" => |s| {
        s.reschedule = Some(ReschedulePolicy { delay_function: 4, ..Default::default() });
    }
    reschedule_max_delay_not_below_delay: "spec.reschedule.max_delay" => |s| {
        s.reschedule = Some(ReschedulePolicy { delay: secs(60), max_delay: secs(1), ..Default::default() });
    }
    secret_name_syntax: "spec.secrets[0].name" => |s| { s.secrets = vec![file_ref("db password", "", 0)]; }
    secret_resolves: "spec.secrets[0].name" => |s| { s.secrets = vec![file_ref("missing", "", 0)]; }
    secret_target_unique: "spec.secrets[1].target" => |s| {
        s.secrets = vec![file_ref("db-password", "", 0), file_ref("api-key", "/run/secrets/db-password", 0)];
    }
    secret_target_no_dotdot: "spec.secrets[0].target" => |s| { s.secrets = vec![file_ref("api-key", "/run/../etc/passwd", 0)]; }
    secret_target_file_name: "spec.secrets[0].target" => |s| { s.secrets = vec![file_ref("api-key", "keys/api", 0)]; }
    secret_mode: "spec.secrets[0].mode" => |s| { s.secrets = vec![file_ref("api-key", "", 0o1000)]; }
    config_resolves: "spec.configs[0].name" => |s| { s.configs = vec![file_ref("app.toml", "/etc/app.toml", 0)]; }
    config_target_unique: "spec.configs[1].target" => |s| {
        s.configs = vec![file_ref("nginx.conf", "/etc/n.conf", 0), file_ref("nginx.conf", "/etc//n.conf", 0)];
    }
    config_mode: "spec.configs[0].mode" => |s| { s.configs = vec![file_ref("nginx.conf", "", 0o4755)]; }
    build_context_required: "spec.build.context" => |s| { s.build = Some(BuildSpec::default()); }
    build_dockerfile_relative: "spec.build.dockerfile" => |s| {
        s.build = Some(BuildSpec { context: "/src".into(), dockerfile: "/Dockerfile".into(), ..Default::default() });
    }
    build_arg_key: "spec.build.args[\"\"]" => |s| {
        s.build = Some(BuildSpec { context: "/src".into(), args: map(&[("", "1")]), ..Default::default() });
    }
    depends_on_name_syntax: "spec.depends_on[0].service" => |s| {
        s.depends_on = vec![Dependency { service: "DB".into(), condition: 0 }];
    }
    depends_on_not_self: "spec.depends_on[0].service" => |s| {
        s.depends_on = vec![Dependency { service: "web".into(), condition: 0 }];
    }
    depends_on_unique: "spec.depends_on[1].service" => |s| {
        let d = Dependency { service: "db".into(), condition: 0 };
        s.depends_on = vec![d.clone(), d];
    }
    depends_on_resolves: "spec.depends_on[0].service" => |s| {
        s.depends_on = vec![Dependency { service: "queue".into(), condition: 0 }];
    }
    depends_on_condition_known: "spec.depends_on[0].condition" => |s| {
        s.depends_on = vec![Dependency { service: "db".into(), condition: 3 }];
    }
    pull_policy_known: "spec.pull_policy" => |s| { s.pull_policy = 4; }
    pull_timeout_positive: "spec.pull_timeout" => |s| { s.pull_timeout = secs(0); }
    stop_signal_known: "spec.stop_signal" => |s| { s.stop_signal = "SIGFOO".into(); }
    stop_signal_number_in_range: "spec.stop_signal" => |s| { s.stop_signal = "65".into(); }
    stop_grace_period_not_negative: "spec.stop_grace_period" => |s| { s.stop_grace_period = secs(-10); }
    migration_trigger_required: "spec.migration_rules[0].trigger" => |s| { s.migration_rules = vec![MigrationRule::default()]; }
    migration_threshold_syntax: "spec.migration_rules[0].resource_threshold" => |s| {
        s.migration_rules = vec![rule(Trigger::ResourceThreshold("disk>80%".into()))];
    }
    migration_threshold_percent: "spec.migration_rules[0].resource_threshold" => |s| {
        s.migration_rules = vec![rule(Trigger::ResourceThreshold("cpu>101%".into()))];
    }
    migration_consecutive_failures_positive: "spec.migration_rules[0].consecutive_failures" => |s| {
        s.migration_rules = vec![rule(Trigger::ConsecutiveFailures(0))];
    }
    migration_bool_trigger_true: "spec.migration_rules[0].node_unhealthy" => |s| {
        s.migration_rules = vec![rule(Trigger::NodeUnhealthy(false))];
    }
    migration_target_node: "spec.migration_rules[0].target_node" => |s| {
        s.migration_rules = vec![MigrationRule { target_node: "Node_1".into(), ..rule(Trigger::NodeCordoned(true)) }];
    }
    migration_retry_delay_positive: "spec.migration_rules[0].retry_delay" => |s| {
        s.migration_rules = vec![MigrationRule { retry_delay: secs(0), ..rule(Trigger::NodeCordoned(true)) }];
    }
}

#[test]
fn image_optional_with_build() {
    let mut s = base();
    s.image.clear();
    s.build = Some(BuildSpec {
        context: "/srv/app".into(),
        dockerfile: "docker/Dockerfile".into(),
        args: map(&[("VERSION", "1")]),
        target: "release".into(),
    });
    assert_eq!(violations(&s), Vec::<(String, String)>::new());
}

#[test]
fn same_port_on_two_protocols_is_fine() {
    let mut s = base();
    s.ports = vec![
        published(53, 53, ""),
        PortSpec {
            protocol: Protocol::Udp as i32,
            ..published(53, 53, "")
        },
        published(54, 54, "10.0.0.1"),
        published(55, 54, "10.0.0.2"),
    ];
    assert_eq!(violations(&s), Vec::<(String, String)>::new());
}

#[test]
fn reference_resolution_uses_known_names() {
    let mut s = base();
    s.secrets = vec![file_ref("db-password", "", 0)];
    s.depends_on = vec![Dependency {
        service: "db".into(),
        condition: 0,
    }];
    assert!(violations(&s).is_empty());
    let found = violations_with(&s, &KnownNames::default());
    let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.secrets[0].name", "spec.depends_on[0].service"]
    );
}

#[test]
fn map_keys_are_quoted_and_escaped() {
    let mut s = base();
    s.env = map(&[("A\"=", "1")]);
    assert_violation(&s, r#"spec.env["A\"="]"#);
}

#[test]
fn oversized_list_is_reported_once() {
    let mut s = base();
    s.ports = vec![port(0); MAX_ITEMS + 1];
    let found = violations(&s);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "spec.ports");
}

#[test]
fn stop_signal_forms() {
    for good in [
        "SIGTERM",
        "TERM",
        "term",
        "sigquit",
        "9",
        "64",
        "RTMIN+3",
        "SIGRTMAX-1",
    ] {
        assert_eq!(stop_signal(good), Ok(()), "{good}");
    }
    for bad in ["", "0", "65", "SIG", "TERM1", "RTMIN+16", "-9", "KILL "] {
        assert!(stop_signal(bad).is_err(), "{bad}");
    }
}

#[test]
fn memory_quantities() {
    const KI: u64 = 1024;
    let good: &[(&str, u64)] = &[
        ("0", 0),
        ("1024", 1024),
        ("10b", 10),
        ("1k", KI),
        ("1K", KI),
        ("1kb", KI),
        ("1KiB", KI),
        ("512m", 512 * KI * KI),
        ("512M", 512 * KI * KI),
        ("512MB", 512 * KI * KI),
        ("512Mi", 512 * KI * KI),
        ("1g", KI * KI * KI),
        ("1Gi", KI * KI * KI),
        ("1.5g", 3 * KI * KI * KI / 2),
        (".5k", 512),
        ("2t", 2 * KI.pow(4)),
        ("1Ti", KI.pow(4)),
        ("1p", KI.pow(5)),
        ("1.0", 1),
        ("0.0001k", 0),
    ];
    for (s, want) in good {
        assert_eq!(parse_memory(s), Ok(*want), "{s}");
    }
    let bad = [
        "",
        "m",
        ".",
        "1.",
        "-1",
        "+1",
        "1 g",
        " 1g",
        "1.5",
        "1x",
        "1mm",
        "1i",
        "1ki b",
        "1.2.3k",
        "99999999999999999999",
        "9e9",
        "8388608t",
        "1E",
    ];
    for s in bad {
        assert!(
            parse_memory(s).is_err(),
            "{s} parsed as {:?}",
            parse_memory(s)
        );
    }
}

#[test]
fn cpu_quantities() {
    let good: &[(&str, u64)] = &[
        ("1", 1000),
        ("1.5", 1500),
        ("0.25", 250),
        (".5", 500),
        ("0.001", 1),
        ("2.5000", 2500),
        ("1500m", 1500),
        ("0m", 0),
        ("64", 64_000),
    ];
    for (s, want) in good {
        assert_eq!(parse_cpus(s), Ok(*want), "{s}");
    }
    let bad = [
        "",
        "m",
        "1.",
        "0.0005",
        "1.5m",
        "1500M",
        "-1",
        "1 ",
        "one",
        "1c",
        "1e3",
        "99999999999999999999",
        "18446744073709552",
    ];
    for s in bad {
        assert!(parse_cpus(s).is_err(), "{s} parsed as {:?}", parse_cpus(s));
    }
}

#[test]
fn image_references() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let good = [
        "nginx".to_string(),
        "nginx:1.27".into(),
        "library/nginx:latest".into(),
        "ghcr.io/acme/app:v1.2.3-rc.1".into(),
        "localhost/app".into(),
        "localhost:5000/app:dev".into(),
        "registry.example.com:5000/team/sub/app".into(),
        "10.0.0.1:5000/app".into(),
        "[::1]:5000/app:tag".into(),
        "my-registry.local/a__b/c--d/e.f".into(),
        "a_b/c".into(),
        "Registry.Example.com/app".into(),
        format!("nginx@{digest}"),
        format!("nginx:1.27@{digest}"),
        format!("ghcr.io/acme/app@sha512:{}", "a".repeat(128)),
        "app:_tag".into(),
        format!("app:{}", "t".repeat(128)),
    ];
    for s in &good {
        assert!(
            parse_image_reference(s).is_ok(),
            "{s}: {:?}",
            parse_image_reference(s)
        );
    }
    let bad = [
        "".to_string(),
        "Nginx".into(),
        "nginx:".into(),
        "nginx:.tag".into(),
        format!("app:{}", "t".repeat(129)),
        "nginx::1".into(),
        "nginx@sha256:abc".into(),
        format!("nginx@md5:{}", "a".repeat(32)),
        format!("nginx@sha256:{}", "A".repeat(64)),
        "a/-b".into(),
        "a/b-".into(),
        "a//b".into(),
        "a/b/".into(),
        "a.-b".into(),
        "a___b".into(),
        "a..b".into(),
        "my_registry.local/app".into(),
        "my image".into(),
        "ghcr.io:0/app".into(),
        "ghcr.io:99999/app".into(),
        "-bad.io/app".into(),
        "[::1/app".into(),
        "[zz]:5000/app".into(),
        ":tag".into(),
        "@sha256:".into(),
        format!("{}/app", "a".repeat(256)),
    ];
    for s in &bad {
        assert!(parse_image_reference(s).is_err(), "{s} parsed");
    }
}

#[test]
fn image_reference_parts() {
    let r = parse_image_reference("localhost:5000/team/app:v1").unwrap();
    assert_eq!(r.domain, Some("localhost:5000"));
    assert_eq!(r.path, "team/app");
    assert_eq!(r.tag, Some("v1"));
    assert_eq!(r.digest, None);
    let r = parse_image_reference("localhost:5000").unwrap();
    assert_eq!((r.domain, r.path, r.tag), (None, "localhost", Some("5000")));
    let r = parse_image_reference("team/app").unwrap();
    assert_eq!((r.domain, r.path), (None, "team/app"));
}

#[test]
fn cidrs() {
    assert_eq!(
        parse_cidr("10.0.0.0/8"),
        Ok(("10.0.0.0".parse().unwrap(), 8))
    );
    assert!(parse_cidr("fd00::/64").is_ok());
    assert!(parse_cidr("0.0.0.0/0").is_ok());
    for bad in [
        "10.0.0.0",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0.0/33",
        "fd00::/129",
        "x/8",
        "10.0.0/8",
    ] {
        assert!(parse_cidr(bad).is_err(), "{bad}");
    }
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(cidr_contains(ip("10.1.0.0"), 16, ip("10.1.255.1")));
    assert!(!cidr_contains(ip("10.1.0.0"), 16, ip("10.2.0.1")));
    assert!(cidr_contains(ip("0.0.0.0"), 0, ip("1.2.3.4")));
    assert!(cidr_contains(ip("fd00::"), 64, ip("fd00::1")));
    assert!(!cidr_contains(ip("fd00::"), 64, ip("10.0.0.1")));
}

#[test]
fn names() {
    let check = |f: fn(&str, &str, &mut FieldViolations), s: &str| single(f, "n", s).is_ok();
    assert!(check(name, "a"));
    assert!(check(name, "web-2"));
    assert!(!check(name, "2web"));
    assert!(!check(name, "web.x"));
    assert!(check(node_name, "node-1.eu-west.example"));
    assert!(check(node_name, "1node"));
    assert!(!check(node_name, "Node1"));
    assert!(!check(node_name, "node..1"));
    assert!(!check(node_name, &format!("{}.a", "a".repeat(64))));
    assert!(!check(node_name, &vec!["a".repeat(63); 5].join(".")));
    assert!(check(hostname, "Web-1.Example.COM"));
    assert!(!check(hostname, "-web"));
    assert!(check(object_name, "db_password.v2"));
    assert!(check(object_name, "A"));
    assert!(!check(object_name, "db-"));
    assert!(!check(object_name, ".env"));
    assert!(!check(object_name, "a/b"));
}

#[test]
fn durations() {
    let mut v = FieldViolations::default();
    let d = |seconds, nanos| Duration { seconds, nanos };
    assert_eq!(
        duration("d", &d(0, 0), DurationRule::NonNegative, &mut v),
        Some(StdDuration::ZERO)
    );
    assert_eq!(
        duration("d", &d(1, 5), DurationRule::Positive, &mut v),
        Some(StdDuration::new(1, 5))
    );
    assert!(v.is_empty());
    assert_eq!(
        duration("a", &d(0, 0), DurationRule::Positive, &mut v),
        None
    );
    assert_eq!(
        duration("b", &d(-1, 0), DurationRule::NonNegative, &mut v),
        None
    );
    assert_eq!(
        duration("c", &d(0, -1), DurationRule::NonNegative, &mut v),
        None
    );
    assert_eq!(
        duration("d", &d(0, 1_000_000_000), DurationRule::NonNegative, &mut v),
        None
    );
    assert_eq!(
        duration(
            "e",
            &d(MAX_DURATION_SECONDS + 1, 0),
            DurationRule::NonNegative,
            &mut v
        ),
        None
    );
    let rule = DurationRule::Between(MIN_LEASE_TTL, MAX_LEASE_TTL);
    assert_eq!(duration("f", &d(3601, 0), rule, &mut v), None);
    let fields: Vec<&str> = v.0.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["a", "b", "c", "d", "e", "f"]);
}

fn fields(r: Result<(), Error>) -> Vec<String> {
    match r {
        Ok(()) => Vec::new(),
        Err(Error::InvalidArgument(v)) => v.0.into_iter().map(|f| f.field).collect(),
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn secrets_and_configs() {
    let secret = |name: &str, data: Vec<u8>, labels| PutSecretRequest {
        secret: Some(SecretSpec {
            name: name.into(),
            data,
            labels,
        }),
    };
    assert!(
        fields(put_secret(&secret(
            "db-password",
            b"x".to_vec(),
            map(&[("team", "a")])
        )))
        .is_empty()
    );
    assert_eq!(fields(put_secret(&PutSecretRequest::default())), ["secret"]);
    assert_eq!(
        fields(put_secret(&secret(
            "bad name",
            Vec::new(),
            map(&[("constellation.x", "")])
        ))),
        [
            "secret.name",
            "secret.data",
            "secret.labels[\"constellation.x\"]"
        ]
    );
    assert_eq!(
        fields(put_secret(&secret(
            "big",
            vec![0; MAX_SECRET_BYTES + 1],
            map(&[])
        ))),
        ["secret.data"]
    );
    let config = |name: &str, data: Vec<u8>| PutConfigRequest {
        config: Some(ConfigSpec {
            name: name.into(),
            data,
            labels: BTreeMap::new(),
        }),
    };
    assert!(fields(put_config(&config("nginx.conf", Vec::new()))).is_empty());
    assert_eq!(
        fields(put_config(&config("", vec![0; MAX_CONFIG_BYTES + 1]))),
        ["config.name", "config.data"]
    );
    assert_eq!(fields(put_config(&PutConfigRequest::default())), ["config"]);
}

#[test]
fn leases() {
    let acquire = |name: &str, holder: &str, ttl| AcquireLeaseRequest {
        name: name.into(),
        holder: holder.into(),
        ttl,
    };
    assert!(
        fields(acquire_lease(&acquire(
            "scheduler.leader",
            "node-1/pid-42",
            secs(15)
        )))
        .is_empty()
    );
    assert_eq!(
        fields(acquire_lease(&acquire("", "", None))),
        ["name", "holder", "ttl"]
    );
    assert_eq!(
        fields(acquire_lease(&acquire("x y", "a\nb", nanos(500)))),
        ["name", "holder", "ttl"]
    );
    assert_eq!(
        fields(acquire_lease(&acquire("l", &"h".repeat(254), secs(3601)))),
        ["holder", "ttl"]
    );
    let renew = RenewLeaseRequest {
        name: "l".into(),
        holder: "h".into(),
        fencing_token: 3,
        ttl: None,
    };
    assert!(fields(renew_lease(&renew)).is_empty());
    let renew = RenewLeaseRequest {
        ttl: secs(0),
        ..renew
    };
    assert_eq!(fields(renew_lease(&renew)), ["ttl"]);
    let release = ReleaseLeaseRequest {
        name: "-l".into(),
        holder: String::new(),
        fencing_token: 1,
    };
    assert_eq!(fields(release_lease(&release)), ["name", "holder"]);
}

#[test]
fn node_and_migration_requests() {
    let drain = DrainNodeRequest {
        name: "node-1".into(),
        deadline: secs(600),
        batch_size: 2,
    };
    assert!(fields(drain_node(&drain)).is_empty());
    let drain = DrainNodeRequest {
        name: "Node 1".into(),
        deadline: secs(0),
        batch_size: MAX_REPLICAS + 1,
    };
    assert_eq!(
        fields(drain_node(&drain)),
        ["name", "deadline", "batch_size"]
    );
    let migration = CreateMigrationRequest {
        service_name: "web".into(),
        allocation_id: "0190a3c2-7d1e-7000-8000-000000000001".into(),
        target_node: "node-2".into(),
        priority: 0,
    };
    assert!(fields(create_migration(&migration)).is_empty());
    let migration = CreateMigrationRequest {
        service_name: String::new(),
        allocation_id: "../x".into(),
        target_node: "node_2".into(),
        priority: 0,
    };
    assert_eq!(
        fields(create_migration(&migration)),
        ["service_name", "allocation_id", "target_node"]
    );
    let list = ListAllocationsRequest {
        service_name: "Web".into(),
        node_name: "n..1".into(),
        ..Default::default()
    };
    assert_eq!(
        fields(list_allocations(&list)),
        ["service_name", "node_name"]
    );
    assert!(fields(list_allocations(&ListAllocationsRequest::default())).is_empty());
    assert_eq!(fields(single(node_name, "name", "")), ["name"]);
}

proptest! {
    #[test]
    fn memory_mebibytes_round_trip(n in 0u64..(1 << 40)) {
        prop_assert_eq!(parse_memory(&format!("{n}Mi")), Ok(n * 1024 * 1024));
        prop_assert_eq!(parse_memory(&format!("{n}m")), Ok(n * 1024 * 1024));
        prop_assert_eq!(parse_memory(&n.to_string()), Ok(n));
    }

    #[test]
    fn cpus_round_trip(millis in 0u64..1_000_000_000) {
        prop_assert_eq!(parse_cpus(&format!("{millis}m")), Ok(millis));
        prop_assert_eq!(parse_cpus(&format!("{}.{:03}", millis / 1000, millis % 1000)), Ok(millis));
    }

    #[test]
    fn generated_dns_labels_are_accepted(s in "[a-z]([a-z0-9-]{0,61}[a-z0-9])?") {
        prop_assert!(dns_label(&s).is_ok());
    }

    #[test]
    fn generated_image_references_are_accepted(
        // Parts are bounded so the whole name stays within the 255 characters a
        // repository name may have (at most 32 + 62 + 2 x 63 = 220 here); the
        // limit itself is tested on its own.
        s in "([a-z0-9]{1,20}\\.[a-z]{2,5}(:[1-9][0-9]{0,3})?/)?[a-z0-9]{1,20}([_-][a-z0-9]{1,20}){0,2}(/[a-z0-9]{1,20}([._-][a-z0-9]{1,20}){0,2}){0,2}(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,20})?"
    ) {
        prop_assert!(parse_image_reference(&s).is_ok(), "{:?}", parse_image_reference(&s));
    }

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,80}") {
        let _ = parse_memory(&s);
        let _ = parse_cpus(&s);
        let _ = parse_cidr(&s);
        let _ = parse_image_reference(&s);
        let _ = stop_signal(&s);
        let _ = resource_threshold(&s);
        let _ = dns_name(&s, MAX_NAME_LEN, true);
        let _ = docker_name(&s, 2, MAX_NAME_LEN);
    }

    #[test]
    fn arbitrary_spec_strings_never_panic(
        name in ".{0,70}",
        image in ".{0,70}",
        quantity in "[0-9a-zA-Z.]{0,12}",
        path in "[/a-z.]{0,12}",
    ) {
        let spec = ServiceSpec {
            name: name.clone(),
            image: image.clone(),
            hostname: name.clone(),
            container_name: name.clone(),
            resources: Some(Resources {
                cpus: quantity.clone(),
                memory_limit: quantity.clone(),
                ..Default::default()
            }),
            volumes: vec![volume(Source::Bind(path.clone()), &path)],
            secrets: vec![file_ref(&name, &path, 0)],
            stop_signal: name.clone(),
            migration_rules: vec![rule(Trigger::ResourceThreshold(name))],
            fallbacks: vec![FallbackSpec { name: image.clone(), image, ..Default::default() }],
            ..Default::default()
        };
        let _ = service_spec(&spec, &known());
    }
}
