//! The Traefik renderer, one label rule per test: defaults, keys and values, servers
//! from routable allocations only, TCP and UDP, conflicts, v2 against v3.

mod traefik_support;

use constellation_gateway::traefik::{Protocol, RenderOptions, TraefikVersion};
use constellation_proto::v1 as pb;
use serde_json::json;
use traefik_support::*;

fn v3() -> RenderOptions {
    RenderOptions::default()
}

fn v2() -> RenderOptions {
    RenderOptions {
        version: TraefikVersion::V2,
        ..RenderOptions::default()
    }
}

const ENABLE: (&str, &str) = ("traefik.enable", "true");

#[test]
fn enable_flag_and_exposed_by_default() {
    let mut state = State::new();
    state.service("on", &[ENABLE]);
    state.service("off", &[("traefik.enable", "false")]);
    state.service("bare", &[]);
    state.alloc("a1", "on", "n1", 30001);
    state.alloc("a2", "off", "n1", 30002);
    state.alloc("a3", "bare", "n1", 30003);
    let doc = state.json(&v3());
    let routers: Vec<_> = doc["http"]["routers"].as_object().unwrap().keys().collect();
    assert_eq!(routers, ["on"]);

    let exposed = RenderOptions {
        exposed_by_default: true,
        ..v3()
    };
    let doc = state.json(&exposed);
    let routers: Vec<_> = doc["http"]["routers"].as_object().unwrap().keys().collect();
    assert_eq!(routers, ["bare", "on"]);
}

#[test]
fn enable_alone_makes_the_default_service_and_router() {
    let mut state = State::new();
    state.service("web", &[ENABLE]);
    state.alloc("a1", "web", "n1", 30001);
    assert_eq!(
        state.json(&v3()),
        json!({"http": {
            "routers": {"web": {"rule": "Host(`web`)", "service": "web"}},
            "services": {"web": {"loadBalancer": {"servers": [{"url": "http://10.0.0.1:30001"}]}}}
        }})
    );
}

#[test]
fn default_domain_suffixes_the_default_rule() {
    let mut state = State::new();
    state.service("web", &[ENABLE]);
    state.alloc("a1", "web", "n1", 30001);
    let opts = RenderOptions {
        default_domain: Some("apps.example.com".into()),
        ..v3()
    };
    assert_eq!(
        state.json(&opts)["http"]["routers"]["web"]["rule"],
        "Host(`web.apps.example.com`)"
    );
}

#[test]
fn a_router_without_rule_gets_the_default_rule_and_links_to_the_only_service() {
    let mut state = State::new();
    state.service(
        "web",
        &[
            ENABLE,
            ("traefik.http.routers.r.entrypoints", "web, websecure"),
            ("traefik.http.services.s.loadbalancer.server.port", "8080"),
        ],
    );
    state.alloc("a1", "web", "n1", 30001);
    let doc = state.json(&v3());
    assert_eq!(
        doc["http"]["routers"],
        json!({"r": {"rule": "Host(`web`)", "service": "s", "entryPoints": ["web", "websecure"]}})
    );
    assert_eq!(
        doc["http"]["services"]["s"]["loadBalancer"]["servers"],
        json!([{"url": "http://10.0.0.1:30001"}])
    );
}

#[test]
fn a_router_without_service_among_two_services_is_left_out_with_an_error() {
    let mut state = State::new();
    state.service(
        "web",
        &[
            ENABLE,
            ("traefik.http.routers.r.rule", "Host(`a`)"),
            ("traefik.http.routers.ok.rule", "Host(`b`)"),
            ("traefik.http.routers.ok.service", "one"),
            ("traefik.http.services.one.loadbalancer.server.port", "8080"),
            ("traefik.http.services.two.loadbalancer.server.port", "8080"),
        ],
    );
    state.alloc("a1", "web", "n1", 30001);
    let rendered = state.render(&v3());
    let doc: serde_json::Value = serde_json::from_slice(&rendered.json).unwrap();
    let routers: Vec<_> = doc["http"]["routers"].as_object().unwrap().keys().collect();
    assert_eq!(routers, ["ok"]);
    assert_eq!(rendered.errors.len(), 1, "{:?}", rendered.errors);
    assert!(rendered.errors[0].message.contains("\"r\""));
    assert_eq!(rendered.errors[0].service, "web");
}

#[test]
fn keys_match_case_insensitively_and_come_out_correctly_cased() {
    let mut state = State::new();
    state.service(
        "web",
        &[
            ("Traefik.Enable", "true"),
            ("traefik.HTTP.Routers.Main.Rule", "Host(`x.example`)"),
            ("traefik.http.routers.Main.EntryPoints", "websecure"),
            ("traefik.http.routers.Main.tls.certresolver", "le"),
            (
                "traefik.http.routers.Main.tls.domains[0].main",
                "example.com",
            ),
            (
                "traefik.http.routers.Main.tls.domains[0].sans",
                "a.example.com,b.example.com",
            ),
            ("traefik.http.routers.Main.priority", "42"),
            (
                "traefik.http.services.web.LoadBalancer.passhostheader",
                "false",
            ),
            (
                "traefik.http.services.web.loadbalancer.healthcheck.path",
                "/health",
            ),
            (
                "traefik.http.services.web.loadbalancer.healthcheck.interval",
                "10s",
            ),
            (
                "traefik.http.services.web.loadbalancer.healthcheck.headers.X-Probe",
                "1",
            ),
            (
                "traefik.http.services.web.loadbalancer.sticky.cookie.httponly",
                "true",
            ),
            (
                "traefik.http.services.web.loadbalancer.sticky.cookie.name",
                "sid",
            ),
        ],
    );
    state.alloc("a1", "web", "n1", 30001);
    let doc = state.json(&v3());
    assert_eq!(
        doc["http"]["routers"]["Main"],
        json!({
            "rule": "Host(`x.example`)",
            "service": "web",
            "entryPoints": ["websecure"],
            "priority": 42,
            "tls": {"certResolver": "le", "domains": [{"main": "example.com", "sans": ["a.example.com", "b.example.com"]}]}
        })
    );
    assert_eq!(
        doc["http"]["services"]["web"]["loadBalancer"],
        json!({
            "passHostHeader": false,
            "healthCheck": {"path": "/health", "interval": "10s", "headers": {"X-Probe": "1"}},
            "sticky": {"cookie": {"httpOnly": true, "name": "sid"}},
            "servers": [{"url": "http://10.0.0.1:30001"}]
        })
    );
}

#[test]
fn router_tls_true_is_an_empty_object_and_false_leaves_it_out() {
    let mut state = State::new();
    state.service(
        "a",
        &[
            ENABLE,
            ("traefik.http.routers.a.tls", "true"),
            ("traefik.http.routers.a.rule", "Host(`a`)"),
        ],
    );
    state.service(
        "b",
        &[
            ENABLE,
            ("traefik.http.routers.b.tls", "false"),
            ("traefik.http.routers.b.rule", "Host(`b`)"),
        ],
    );
    state.alloc("a1", "a", "n1", 30001);
    state.alloc("b1", "b", "n1", 30002);
    let doc = state.json(&v3());
    assert_eq!(doc["http"]["routers"]["a"]["tls"], json!({}));
    assert!(doc["http"]["routers"]["b"].get("tls").is_none());
    assert!(empty_objects(&doc).is_empty());
}

#[test]
fn common_middlewares() {
    let mut state = State::new();
    state.service(
        "web",
        &[
            ENABLE,
            ("traefik.http.routers.web.middlewares", "strip,secure"),
            (
                "traefik.http.middlewares.strip.stripprefix.prefixes",
                "/api,/v1",
            ),
            ("traefik.http.middlewares.add.addprefix.prefix", "/app"),
            (
                "traefik.http.middlewares.secure.headers.customrequestheaders.X-Script-Name",
                "web",
            ),
            (
                "traefik.http.middlewares.secure.headers.stsseconds",
                "31536000",
            ),
            ("traefik.http.middlewares.secure.headers.framedeny", "true"),
            (
                "traefik.http.middlewares.https.redirectscheme.scheme",
                "https",
            ),
            (
                "traefik.http.middlewares.https.redirectscheme.permanent",
                "true",
            ),
            (
                "traefik.http.middlewares.auth.basicauth.users",
                "u:$apr1$x$y",
            ),
            ("traefik.http.middlewares.rl.ratelimit.average", "100"),
            ("traefik.http.middlewares.rl.ratelimit.burst", "50"),
            ("traefik.http.middlewares.rl.ratelimit.period", "1m"),
            (
                "traefik.http.middlewares.allow.ipallowlist.sourcerange",
                "10.0.0.0/8, 192.168.0.0/16",
            ),
            (
                "traefik.http.middlewares.allow.ipallowlist.ipstrategy.depth",
                "1",
            ),
            ("traefik.http.middlewares.gz.compress", "true"),
            ("traefik.http.middlewares.again.retry.attempts", "3"),
            (
                "traefik.http.middlewares.again.retry.initialinterval",
                "100ms",
            ),
            (
                "traefik.http.middlewares.all.chain.middlewares",
                "strip,secure",
            ),
        ],
    );
    state.alloc("a1", "web", "n1", 30001);
    let doc = state.json(&v3());
    assert_eq!(
        doc["http"]["middlewares"],
        json!({
            "strip": {"stripPrefix": {"prefixes": ["/api", "/v1"]}},
            "add": {"addPrefix": {"prefix": "/app"}},
            "secure": {"headers": {"customRequestHeaders": {"X-Script-Name": "web"}, "stsSeconds": 31536000, "frameDeny": true}},
            "https": {"redirectScheme": {"scheme": "https", "permanent": true}},
            "auth": {"basicAuth": {"users": ["u:$apr1$x$y"]}},
            "rl": {"rateLimit": {"average": 100, "burst": 50, "period": "1m"}},
            "allow": {"ipAllowList": {"sourceRange": ["10.0.0.0/8", "192.168.0.0/16"], "ipStrategy": {"depth": 1}}},
            "gz": {"compress": {}},
            "again": {"retry": {"attempts": 3, "initialInterval": "100ms"}},
            "all": {"chain": {"middlewares": ["strip", "secure"]}}
        })
    );
    assert_eq!(
        doc["http"]["routers"]["web"]["middlewares"],
        json!(["strip", "secure"])
    );
}

#[test]
fn a_middleware_with_two_types_or_a_retry_without_attempts_drops_the_service() {
    for labels in [
        [
            ("traefik.http.middlewares.m.stripprefix.prefixes", "/a"),
            ("traefik.http.middlewares.m.addprefix.prefix", "/b"),
        ],
        [
            ("traefik.http.middlewares.m.retry.initialinterval", "1s"),
            ("traefik.enable", "true"),
        ],
    ] {
        let mut state = State::new();
        let mut all = vec![ENABLE];
        all.extend(labels);
        state.service("web", &all);
        state.alloc("a1", "web", "n1", 30001);
        let rendered = state.render(&v3());
        assert_eq!(rendered.json, b"{}");
        assert_eq!(rendered.errors.len(), 1, "{:?}", rendered.errors);
    }
}

#[test]
fn unknown_keys_and_bad_values_drop_only_that_service_and_name_the_label() {
    let cases = [
        ("traefik.http.routers.r.rules", "Host(`a`)", "unknown key"),
        ("traefik.http.routers.r.priority", "high", "not an integer"),
        (
            "traefik.http.services.s.loadbalancer.passhostheader",
            "maybe",
            "not a boolean",
        ),
        (
            "traefik.http.services.s.loadbalancer.healthcheck.interval",
            "ten",
            "not a duration",
        ),
        (
            "traefik.http.services.s.weighted.services",
            "a",
            "unknown key",
        ),
        ("traefik.http.middlewares.m.nosuch.x", "1", "unknown key"),
        (
            "traefik.http.routers.r.entrypoints",
            " , ",
            "at least one value",
        ),
        ("traefik.http.routers.r.rule", "", "must not be empty"),
        (
            "traefik.tcp.middlewares.m.ipallowlist.sourcerange",
            "1.2.3.4",
            "not supported",
        ),
        ("traefik.htp.routers.r.rule", "Host(`a`)", "unknown key"),
        ("traefik.http.routers.r", "x", "needs a key"),
    ];
    for (key, value, reason) in cases {
        let mut state = State::new();
        state.service("bad", &[ENABLE, (key, value)]);
        state.service("good", &[ENABLE]);
        state.alloc("a1", "bad", "n1", 30001);
        state.alloc("a2", "good", "n1", 30002);
        let rendered = state.render(&v3());
        let doc: serde_json::Value = serde_json::from_slice(&rendered.json).unwrap();
        let routers: Vec<_> = doc["http"]["routers"].as_object().unwrap().keys().collect();
        assert_eq!(routers, ["good"], "{key}");
        assert_eq!(rendered.errors.len(), 1, "{key}: {:?}", rendered.errors);
        let error = rendered.errors[0].to_string();
        assert!(error.contains(key), "{error}");
        assert!(error.contains(reason), "{key}: {error}");
    }
}

#[test]
fn provider_options_of_traefiks_docker_provider_are_ignored() {
    let mut state = State::new();
    state.service("web", &[ENABLE, ("traefik.docker.network", "proxy")]);
    state.alloc("a1", "web", "n1", 30001);
    let rendered = state.render(&v3());
    assert!(rendered.errors.is_empty());
    assert!(rendered.json.len() > 2);
}

#[test]
fn servers_come_only_from_routable_allocations() {
    let mut state = State::new();
    state.node("cordoned", "10.0.0.2").availability = pb::NodeAvailability::Cordoned as i32;
    state.node("draining", "10.0.0.3").availability = pb::NodeAvailability::Draining as i32;
    state.node("down", "10.0.0.4").status = pb::NodeStatus::Down as i32;
    state.service("web", &[ENABLE]);
    state.alloc("healthy", "web", "n1", 30001);
    set_health(
        state.alloc("nocheck", "web", "n1", 30002),
        pb::HealthState::None,
    );
    set_health(
        state.alloc("unhealthy", "web", "n1", 30003),
        pb::HealthState::Unhealthy,
    );
    set_health(
        state.alloc("starting", "web", "n1", 30004),
        pb::HealthState::Starting,
    );
    set_health(
        state.alloc("unknown", "web", "n1", 30005),
        pb::HealthState::Unspecified,
    );
    set_state(
        state.alloc("exited", "web", "n1", 30006),
        pb::AllocationState::Exited,
    );
    set_state(
        state.alloc("restarting", "web", "n1", 30007),
        pb::AllocationState::Restarting,
    );
    state.alloc("stopping", "web", "n1", 30008).desired_state =
        pb::AllocationDesiredState::Stop as i32;
    state.alloc("on-cordoned", "web", "cordoned", 30009);
    state.alloc("on-draining", "web", "draining", 30010);
    state.alloc("on-down", "web", "down", 30011);
    state.alloc("on-unknown-node", "web", "ghost", 30012);
    let doc = state.json(&v3());
    assert_eq!(server_addresses(&doc), ["10.0.0.1:30001", "10.0.0.1:30002"]);
}

#[test]
fn a_service_with_no_routable_allocation_contributes_nothing() {
    let mut state = State::new();
    state.service(
        "web",
        &[
            ENABLE,
            ("traefik.http.middlewares.m.addprefix.prefix", "/x"),
        ],
    );
    set_health(
        state.alloc("a1", "web", "n1", 30001),
        pb::HealthState::Unhealthy,
    );
    let rendered = state.render(&v3());
    assert_eq!(rendered.json, b"{}");
    assert!(rendered.errors.is_empty());
}

#[test]
fn endpoints_resolve_to_reachable_addresses() {
    let mut state = State::new();
    state.node("v6", "fd00::5");
    state.service("web", &[ENABLE]);
    state.alloc("a1", "web", "n1", 30001);
    state.alloc("a2", "web", "v6", 30002);
    // A port bound to one address is reached there.
    let a3 = state.alloc("a3", "web", "n1", 30003);
    a3.status.as_mut().unwrap().endpoints[0].host_ip = "192.168.1.9".into();
    // Not reported yet: no server.
    state
        .alloc("a4", "web", "n1", 30004)
        .status
        .as_mut()
        .unwrap()
        .endpoints
        .clear();
    let doc = state.json(&v3());
    assert_eq!(
        server_addresses(&doc),
        ["10.0.0.1:30001", "192.168.1.9:30003", "[fd00::5]:30002"]
    );
}

#[test]
fn the_port_label_picks_the_container_port_and_the_default_is_the_lowest_published() {
    let mut state = State::new();
    state.service_with_ports(
        "lowest",
        &[ENABLE],
        &[
            (9000, pb::Protocol::Tcp),
            (8000, pb::Protocol::Tcp),
            (53, pb::Protocol::Udp),
        ],
    );
    state.alloc("a1", "lowest", "n1", 31000); // 9000→31000, 8000→31001, 53/udp→31002
    state.service_with_ports(
        "labelled",
        &[
            ENABLE,
            (
                "traefik.http.services.labelled.loadbalancer.server.port",
                "9000",
            ),
            (
                "traefik.http.services.labelled.loadbalancer.server.scheme",
                "h2c",
            ),
        ],
        &[(9000, pb::Protocol::Tcp), (8000, pb::Protocol::Tcp)],
    );
    state.alloc("a2", "labelled", "n1", 32000);
    let doc = state.json(&v3());
    assert_eq!(
        doc["http"]["services"]["lowest"]["loadBalancer"]["servers"],
        json!([{"url": "http://10.0.0.1:31001"}])
    );
    assert_eq!(
        doc["http"]["services"]["labelled"]["loadBalancer"]["servers"],
        json!([{"url": "h2c://10.0.0.1:32000"}])
    );
}

#[test]
fn a_port_that_is_not_published_or_no_port_at_all_is_an_error() {
    let mut state = State::new();
    state.service(
        "unpublished",
        &[
            ENABLE,
            ("traefik.http.services.x.loadbalancer.server.port", "9999"),
        ],
    );
    state.alloc("a1", "unpublished", "n1", 30001);
    state.service_with_ports("portless", &[ENABLE], &[]);
    state.alloc("a2", "portless", "n1", 30002);
    state.service(
        "badscheme",
        &[
            ENABLE,
            ("traefik.http.services.y.loadbalancer.server.scheme", "ftp"),
        ],
    );
    state.alloc("a3", "badscheme", "n1", 30003);
    let rendered = state.render(&v3());
    assert_eq!(rendered.json, b"{}");
    let messages: Vec<String> = rendered.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].contains("ftp"), "{messages:?}");
    assert!(messages[1].contains("no port"), "{messages:?}");
    assert!(
        messages[2].contains("9999 is not published"),
        "{messages:?}"
    );
}

#[test]
fn replicas_merge_their_servers_in_address_order() {
    let mut state = State::new();
    state.node("n2", "10.0.0.2");
    state.service("web", &[ENABLE]);
    state.alloc("c", "web", "n2", 30001);
    state.alloc("b", "web", "n1", 30002);
    state.alloc("a", "web", "n1", 30001);
    let doc = state.json(&v3());
    assert_eq!(
        server_addresses(&doc),
        ["10.0.0.1:30001", "10.0.0.1:30002", "10.0.0.2:30001"]
    );
}

#[test]
fn names_shared_between_services_merge_when_identical_and_conflict_otherwise() {
    let mut state = State::new();
    let shared = [
        ENABLE,
        ("traefik.http.routers.front.rule", "Host(`front`)"),
        ("traefik.http.routers.front.service", "pool"),
        (
            "traefik.http.services.pool.loadbalancer.server.port",
            "8080",
        ),
        ("traefik.http.middlewares.strip.stripprefix.prefixes", "/a"),
    ];
    state.service("blue", &shared);
    state.service("green", &shared);
    state.alloc("b1", "blue", "n1", 30001);
    state.alloc("g1", "green", "n1", 30002);
    let rendered = state.render(&v3());
    assert!(rendered.errors.is_empty(), "{:?}", rendered.errors);
    let doc: serde_json::Value = serde_json::from_slice(&rendered.json).unwrap();
    assert_eq!(server_addresses(&doc), ["10.0.0.1:30001", "10.0.0.1:30002"]);
    assert_eq!(doc["http"]["routers"]["front"]["service"], "pool");

    // green now defines the router and the middleware differently.
    let green = state.service(
        "green",
        &[
            ENABLE,
            ("traefik.http.routers.front.rule", "Host(`other`)"),
            ("traefik.http.routers.front.service", "pool"),
            (
                "traefik.http.services.pool.loadbalancer.server.port",
                "8080",
            ),
            (
                "traefik.http.services.pool.loadbalancer.passhostheader",
                "false",
            ),
            ("traefik.http.middlewares.strip.stripprefix.prefixes", "/b"),
        ],
    );
    let _ = green;
    let rendered = state.render(&v3());
    let doc: serde_json::Value = serde_json::from_slice(&rendered.json).unwrap();
    assert_eq!(rendered.json, b"{}", "{doc}");
    let messages: Vec<String> = rendered.errors.iter().map(|e| e.message.clone()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages.iter().all(|m| m.contains("blue, green")),
        "{messages:?}"
    );
}

#[test]
fn routers_to_services_of_other_providers_are_kept() {
    let mut state = State::new();
    state.service(
        "web",
        &[
            ENABLE,
            ("traefik.http.routers.dash.rule", "Host(`dash`)"),
            ("traefik.http.routers.dash.service", "api@internal"),
        ],
    );
    state.alloc("a1", "web", "n1", 30001);
    let doc = state.json(&v3());
    assert_eq!(doc["http"]["routers"]["dash"]["service"], "api@internal");
    assert!(doc["http"]["services"]["web"].is_object());
}

#[test]
fn tcp_routers_and_services_without_http_defaults() {
    let mut state = State::new();
    state.service_with_ports(
        "pg",
        &[
            ENABLE,
            ("traefik.tcp.routers.pg.rule", "HostSNI(`db.example`)"),
            ("traefik.tcp.routers.pg.entrypoints", "pg"),
            ("traefik.tcp.routers.pg.tls.passthrough", "true"),
            (
                "traefik.tcp.services.pg.loadbalancer.proxyprotocol.version",
                "2",
            ),
        ],
        &[(5432, pb::Protocol::Tcp)],
    );
    state.alloc("a1", "pg", "n1", 30001);
    let doc = state.json(&v3());
    assert_eq!(
        doc,
        json!({"tcp": {
            "routers": {"pg": {"rule": "HostSNI(`db.example`)", "service": "pg", "entryPoints": ["pg"], "tls": {"passthrough": true}}},
            "services": {"pg": {"loadBalancer": {"proxyProtocol": {"version": 2}, "servers": [{"address": "10.0.0.1:30001"}]}}}
        }})
    );
}

#[test]
fn a_tcp_router_without_rule_is_left_out_with_an_error() {
    let mut state = State::new();
    state.service(
        "db",
        &[ENABLE, ("traefik.tcp.routers.db.entrypoints", "db")],
    );
    state.alloc("a1", "db", "n1", 30001);
    let rendered = state.render(&v3());
    let doc: serde_json::Value = serde_json::from_slice(&rendered.json).unwrap();
    assert!(doc["tcp"].get("routers").is_none(), "{doc}");
    assert_eq!(rendered.errors.len(), 1);
    assert!(rendered.errors[0].message.contains("no rule"));
}

#[test]
fn udp_routers_and_services_use_udp_ports() {
    let mut state = State::new();
    state.service_with_ports(
        "dns",
        &[ENABLE, ("traefik.udp.routers.dns.entrypoints", "dns")],
        &[(8053, pb::Protocol::Tcp), (53, pb::Protocol::Udp)],
    );
    state.alloc("a1", "dns", "n1", 30001); // 8053/tcp→30001, 53/udp→30002
    let doc = state.json(&v3());
    assert_eq!(
        doc,
        json!({"udp": {
            "routers": {"dns": {"entryPoints": ["dns"], "service": "dns"}},
            "services": {"dns": {"loadBalancer": {"servers": [{"address": "10.0.0.1:30002"}]}}}
        }})
    );
}

#[test]
fn http_and_tcp_together() {
    let mut state = State::new();
    state.service(
        "web",
        &[
            ENABLE,
            ("traefik.http.routers.web.rule", "Host(`web`)"),
            ("traefik.tcp.routers.raw.rule", "HostSNI(`*`)"),
        ],
    );
    state.alloc("a1", "web", "n1", 30001);
    let doc = state.json(&v3());
    assert_eq!(doc["http"]["routers"]["web"]["service"], "web");
    assert_eq!(doc["tcp"]["routers"]["raw"]["service"], "web");
    assert_eq!(
        doc["tcp"]["services"]["web"]["loadBalancer"]["servers"],
        json!([{"address": "10.0.0.1:30001"}])
    );
}

#[test]
fn v3_fields_are_refused_in_v2_mode_and_v2_output_has_none() {
    let mut state = State::new();
    state.service(
        "web",
        &[
            ENABLE,
            ("traefik.http.services.web.loadbalancer.server.weight", "2"),
            (
                "traefik.http.services.web.loadbalancer.server.preservepath",
                "true",
            ),
            ("traefik.http.routers.web.rulesyntax", "v3"),
        ],
    );
    state.alloc("a1", "web", "n1", 30001);
    let doc = state.json(&v3());
    assert_eq!(
        doc["http"]["services"]["web"]["loadBalancer"]["servers"],
        json!([{"url": "http://10.0.0.1:30001", "weight": 2, "preservePath": true}])
    );
    assert_eq!(doc["http"]["routers"]["web"]["ruleSyntax"], "v3");

    let rendered = state.render(&v2());
    assert_eq!(rendered.json, b"{}");
    assert_eq!(rendered.errors.len(), 3, "{:?}", rendered.errors);
    assert!(
        rendered
            .errors
            .iter()
            .all(|e| e.message.contains("Traefik v2"))
    );

    // And the other way round: fields v3 removed are refused in v3 mode.
    let mut state = State::new();
    state.service(
        "web",
        &[
            ENABLE,
            ("traefik.http.middlewares.h.headers.sslredirect", "true"),
        ],
    );
    state.alloc("a1", "web", "n1", 30001);
    let doc = state.json(&v2());
    assert_eq!(
        doc["http"]["middlewares"]["h"]["headers"]["sslRedirect"],
        true
    );
    let rendered = state.render(&v3());
    assert_eq!(rendered.json, b"{}");
    assert!(rendered.errors[0].message.contains("Traefik v3"));

    // Labels both majors know render the same in both.
    let mut state = State::new();
    state.service(
        "web",
        &[
            ENABLE,
            (
                "traefik.http.middlewares.a.ipallowlist.sourcerange",
                "10.0.0.0/8",
            ),
        ],
    );
    state.alloc("a1", "web", "n1", 30001);
    assert_eq!(state.render(&v2()).json, state.render(&v3()).json);
}

#[test]
fn identical_state_renders_identical_bytes() {
    let build = |reverse: bool| {
        let mut state = State::new();
        let mut names: Vec<String> = (0..20).map(|i| format!("svc{i}")).collect();
        if reverse {
            names.reverse();
        }
        for (i, name) in names.iter().enumerate() {
            state.service(
                name,
                &[ENABLE, ("traefik.http.routers.r.middlewares", "a,b")],
            );
            let _ = i;
        }
        for name in &names {
            let n: u32 = name[3..].parse().unwrap();
            state.alloc(&format!("{name}-a"), name, "n1", 30000 + n);
        }
        state.render(&v3()).json
    };
    let first = build(false);
    assert_eq!(first, build(false));
    assert_eq!(first, build(true));
}

#[test]
fn nothing_routable_is_the_empty_document_and_parts_are_maps() {
    let state = State::new();
    let rendered = state.render(&v3());
    assert_eq!(rendered.json, b"{}");
    assert_eq!(rendered.part(Protocol::Http, "routers"), b"{}");

    let mut state = State::new();
    state.service("web", &[ENABLE]);
    state.alloc("a1", "web", "n1", 30001);
    let rendered = state.render(&v3());
    let routers: serde_json::Value =
        serde_json::from_slice(&rendered.part(Protocol::Http, "routers")).unwrap();
    assert_eq!(
        routers,
        json!({"web": {"rule": "Host(`web`)", "service": "web"}})
    );
    assert_eq!(rendered.part(Protocol::Udp, "services"), b"{}");
}
