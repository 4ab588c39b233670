//! The rendered document against SchemaStore's Traefik file-provider schemas (v3, and
//! v2 in v2 mode) for a varied set of label combinations, plus a walk asserting that
//! no object is empty outside the ones Traefik accepts empty. The schemas stay in
//! `../shared`; without it the schema half says it skips and the walk still runs.

mod traefik_support;

use constellation_gateway::traefik::{RenderOptions, TraefikVersion};
use constellation_proto::v1 as pb;
use traefik_support::*;

type Labels = &'static [(&'static str, &'static str)];
/// What the combination shows, its labels, and the ports its service publishes.
type Combination = (&'static str, Labels, Vec<(u32, pb::Protocol)>);

/// Label sets both majors accept, each with the ports its service publishes.
fn combinations() -> Vec<Combination> {
    let http = vec![(8080, pb::Protocol::Tcp)];
    vec![
        ("enable only", &[("traefik.enable", "true")], http.clone()),
        (
            "router with tls and middlewares",
            &[
                ("traefik.enable", "true"),
                (
                    "traefik.http.routers.front.rule",
                    "Host(`a.example`) && PathPrefix(`/api`)",
                ),
                ("traefik.http.routers.front.entrypoints", "websecure"),
                ("traefik.http.routers.front.middlewares", "strip,secure,gz"),
                ("traefik.http.routers.front.priority", "10"),
                ("traefik.http.routers.front.tls", "true"),
                ("traefik.http.routers.front.tls.certresolver", "le"),
                ("traefik.http.routers.front.tls.options", "modern@file"),
                (
                    "traefik.http.routers.front.tls.domains[0].main",
                    "example.com",
                ),
                (
                    "traefik.http.routers.front.tls.domains[0].sans",
                    "*.example.com",
                ),
                (
                    "traefik.http.routers.front.tls.domains[1].main",
                    "example.org",
                ),
                (
                    "traefik.http.middlewares.strip.stripprefix.prefixes",
                    "/api",
                ),
                (
                    "traefik.http.middlewares.strip.stripprefix.forceslash",
                    "false",
                ),
                (
                    "traefik.http.middlewares.secure.headers.stsincludesubdomains",
                    "true",
                ),
                (
                    "traefik.http.middlewares.secure.headers.customresponseheaders.X-Frame-Options",
                    "DENY",
                ),
                (
                    "traefik.http.middlewares.secure.headers.accesscontrolallowmethods",
                    "GET,POST",
                ),
                (
                    "traefik.http.middlewares.secure.headers.accesscontrolmaxage",
                    "100",
                ),
                (
                    "traefik.http.middlewares.secure.headers.sslproxyheaders.X-Forwarded-Proto",
                    "https",
                ),
                (
                    "traefik.http.middlewares.secure.headers.contentsecuritypolicy",
                    "default-src 'self'",
                ),
                ("traefik.http.middlewares.gz.compress", "true"),
            ],
            http.clone(),
        ),
        (
            "load balancer options",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.services.api.loadbalancer.server.port", "8080"),
                (
                    "traefik.http.services.api.loadbalancer.server.scheme",
                    "https",
                ),
                (
                    "traefik.http.services.api.loadbalancer.passhostheader",
                    "true",
                ),
                (
                    "traefik.http.services.api.loadbalancer.serverstransport",
                    "insecure@file",
                ),
                (
                    "traefik.http.services.api.loadbalancer.healthcheck.path",
                    "/health",
                ),
                (
                    "traefik.http.services.api.loadbalancer.healthcheck.port",
                    "8081",
                ),
                (
                    "traefik.http.services.api.loadbalancer.healthcheck.interval",
                    "10s",
                ),
                (
                    "traefik.http.services.api.loadbalancer.healthcheck.timeout",
                    "3s",
                ),
                (
                    "traefik.http.services.api.loadbalancer.healthcheck.scheme",
                    "http",
                ),
                (
                    "traefik.http.services.api.loadbalancer.healthcheck.hostname",
                    "api.local",
                ),
                (
                    "traefik.http.services.api.loadbalancer.healthcheck.method",
                    "HEAD",
                ),
                (
                    "traefik.http.services.api.loadbalancer.healthcheck.followredirects",
                    "false",
                ),
                (
                    "traefik.http.services.api.loadbalancer.healthcheck.headers.X-Probe",
                    "yes",
                ),
                (
                    "traefik.http.services.api.loadbalancer.responseforwarding.flushinterval",
                    "100ms",
                ),
                (
                    "traefik.http.services.api.loadbalancer.sticky.cookie",
                    "true",
                ),
            ],
            http.clone(),
        ),
        (
            "sticky cookie fields",
            &[
                ("traefik.enable", "true"),
                (
                    "traefik.http.services.s.loadbalancer.sticky.cookie.name",
                    "sid",
                ),
                (
                    "traefik.http.services.s.loadbalancer.sticky.cookie.secure",
                    "true",
                ),
                (
                    "traefik.http.services.s.loadbalancer.sticky.cookie.httponly",
                    "true",
                ),
                (
                    "traefik.http.services.s.loadbalancer.sticky.cookie.samesite",
                    "lax",
                ),
            ],
            http.clone(),
        ),
        (
            "auth, limits and redirects",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.r.rule", "PathPrefix(`/`)"),
                ("traefik.http.routers.r.middlewares", "all"),
                (
                    "traefik.http.middlewares.auth.basicauth.users",
                    "a:$apr1$x$y,b:$apr1$z$w",
                ),
                ("traefik.http.middlewares.auth.basicauth.realm", "ops"),
                (
                    "traefik.http.middlewares.auth.basicauth.removeheader",
                    "true",
                ),
                ("traefik.http.middlewares.rl.ratelimit.average", "100"),
                ("traefik.http.middlewares.rl.ratelimit.burst", "200"),
                ("traefik.http.middlewares.rl.ratelimit.period", "1s"),
                (
                    "traefik.http.middlewares.rl.ratelimit.sourcecriterion.requestheadername",
                    "X-User",
                ),
                ("traefik.http.middlewares.rl2.ratelimit.average", "5"),
                (
                    "traefik.http.middlewares.rl2.ratelimit.sourcecriterion.ipstrategy.depth",
                    "2",
                ),
                (
                    "traefik.http.middlewares.allow.ipallowlist.sourcerange",
                    "127.0.0.1/32,10.0.0.0/8",
                ),
                (
                    "traefik.http.middlewares.allow.ipallowlist.ipstrategy",
                    "true",
                ),
                (
                    "traefik.http.middlewares.old.ipwhitelist.sourcerange",
                    "10.0.0.0/8",
                ),
                (
                    "traefik.http.middlewares.old.ipwhitelist.ipstrategy.excludedips",
                    "10.0.0.1",
                ),
                (
                    "traefik.http.middlewares.https.redirectscheme.scheme",
                    "https",
                ),
                ("traefik.http.middlewares.https.redirectscheme.port", "443"),
                (
                    "traefik.http.middlewares.https.redirectscheme.permanent",
                    "true",
                ),
                ("traefik.http.middlewares.again.retry.attempts", "4"),
                (
                    "traefik.http.middlewares.again.retry.initialinterval",
                    "100ms",
                ),
                ("traefik.http.middlewares.pre.addprefix.prefix", "/v2"),
                (
                    "traefik.http.middlewares.gz2.compress.excludedcontenttypes",
                    "text/event-stream",
                ),
                (
                    "traefik.http.middlewares.gz2.compress.minresponsebodybytes",
                    "1024",
                ),
                (
                    "traefik.http.middlewares.all.chain.middlewares",
                    "auth,rl,allow,https",
                ),
            ],
            http.clone(),
        ),
        (
            "tcp passthrough",
            &[
                ("traefik.enable", "true"),
                ("traefik.tcp.routers.pg.rule", "HostSNI(`db.example`)"),
                ("traefik.tcp.routers.pg.entrypoints", "pg"),
                ("traefik.tcp.routers.pg.tls.passthrough", "true"),
                ("traefik.tcp.routers.pg.priority", "5"),
                ("traefik.tcp.services.pg.loadbalancer.server.port", "5432"),
                (
                    "traefik.tcp.services.pg.loadbalancer.proxyprotocol.version",
                    "2",
                ),
                (
                    "traefik.tcp.services.pg.loadbalancer.terminationdelay",
                    "100",
                ),
            ],
            vec![(5432, pb::Protocol::Tcp)],
        ),
        (
            "tcp with tls termination and http beside it",
            &[
                ("traefik.enable", "true"),
                ("traefik.tcp.routers.raw.rule", "HostSNI(`*`)"),
                ("traefik.tcp.routers.raw.tls", "true"),
                ("traefik.tcp.routers.raw.tls.certresolver", "le"),
                ("traefik.http.routers.plain.rule", "Host(`web`)"),
            ],
            http.clone(),
        ),
        (
            "udp",
            &[
                ("traefik.enable", "true"),
                ("traefik.udp.routers.dns.entrypoints", "dns"),
                ("traefik.udp.services.dns.loadbalancer.server.port", "53"),
            ],
            vec![(53, pb::Protocol::Udp), (53, pb::Protocol::Tcp)],
        ),
        (
            "router to another provider's service",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.dash.rule", "Host(`dash`)"),
                ("traefik.http.routers.dash.service", "api@internal"),
                ("traefik.http.routers.site.rule", "Host(`site`)"),
            ],
            http.clone(),
        ),
        (
            "flags set false",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.flagged.tls", "false"),
                ("traefik.http.services.web.loadbalancer.sticky", "false"),
                ("traefik.http.middlewares.none.compress", "false"),
                ("traefik.http.middlewares.rl3.ratelimit.average", "1"),
                (
                    "traefik.http.middlewares.rl3.ratelimit.sourcecriterion.ipstrategy",
                    "false",
                ),
            ],
            http.clone(),
        ),
    ]
}

/// Every combination side by side in one cluster, with three replicas each (one of
/// them unhealthy), rendered in `version` mode.
fn document(version: TraefikVersion) -> (serde_json::Value, Vec<String>) {
    let mut state = State::new();
    state.node("n2", "10.0.0.2");
    let mut port = 30000;
    for (i, (_, labels, ports)) in combinations().into_iter().enumerate() {
        let name = format!("svc{i}");
        state.service_with_ports(&name, labels, &ports);
        for (slot, node) in ["n1", "n2", "n1"].into_iter().enumerate() {
            let alloc = state.alloc(&format!("{name}-{slot}"), &name, node, port);
            if slot == 2 {
                set_health(alloc, pb::HealthState::Unhealthy);
            }
            port += 10;
        }
    }
    let rendered = state.render(&RenderOptions {
        version,
        ..RenderOptions::default()
    });
    let errors = rendered.errors.iter().map(|e| e.to_string()).collect();
    (serde_json::from_slice(&rendered.json).unwrap(), errors)
}

/// One service per combination, alone, so a failure names its combination.
fn each_alone(version: TraefikVersion) -> Vec<(&'static str, serde_json::Value)> {
    combinations()
        .into_iter()
        .map(|(what, labels, ports)| {
            let mut state = State::new();
            state.service_with_ports("web", labels, &ports);
            state.alloc("a1", "web", "n1", 30001);
            let rendered = state.render(&RenderOptions {
                version,
                ..RenderOptions::default()
            });
            assert!(rendered.errors.is_empty(), "{what}: {:?}", rendered.errors);
            assert_ne!(rendered.json, b"{}", "{what}: nothing rendered");
            (what, serde_json::from_slice(&rendered.json).unwrap())
        })
        .collect()
}

#[test]
fn documents_have_no_empty_object_outside_the_allowed_ones() {
    for version in [TraefikVersion::V3, TraefikVersion::V2] {
        let (doc, errors) = document(version);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(empty_objects(&doc), Vec::<String>::new(), "{doc:#}");
        for (what, doc) in each_alone(version) {
            assert_eq!(empty_objects(&doc), Vec::<String>::new(), "{what}: {doc:#}");
        }
    }
}

#[test]
fn documents_validate_against_the_traefik_schemas() {
    for version in [TraefikVersion::V3, TraefikVersion::V2] {
        let Some(validator) = schema(version) else {
            return;
        };
        let (doc, _) = document(version);
        assert_eq!(
            schema_errors(validator, &doc),
            Vec::<String>::new(),
            "{doc:#}"
        );
        for (what, doc) in each_alone(version) {
            assert_eq!(
                schema_errors(validator, &doc),
                Vec::<String>::new(),
                "{what} ({version:?}): {doc:#}"
            );
        }
    }
}

#[test]
fn the_schema_lint_catches_what_traefik_rejects() {
    // The lint is only worth something if it fails on the traps.
    let Some(validator) = schema(TraefikVersion::V3) else {
        return;
    };
    for bad in [
        serde_json::json!({"http": {"routers": {"r": {"rule": "Host(`a`)", "service": "s", "unknown": 1}}}}),
        serde_json::json!({"http": {"services": {"s": {"loadBalancer": {"servers": []}}}}}),
        serde_json::json!({"http": {"middlewares": {"m": {"stripPrefix": {"prefixes": ["/a"]}, "addPrefix": {"prefix": "/b"}}}}}),
    ] {
        assert!(!schema_errors(validator, &bad).is_empty(), "{bad}");
    }
}
