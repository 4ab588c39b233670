//! Service specs the end-to-end tests share.

use constellation_proto::v1 as pb;

/// `ms` milliseconds as a protobuf duration.
pub fn millis(ms: u64) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    })
}

/// `replicas` busybox HTTP servers on port 8080, published on 127.0.0.1 at a port
/// Docker picks, healthy once they answer HTTP (checked every `check_ms`, three
/// failures make them unhealthy), stopped with a 1 s grace period.
pub fn http_service(name: &str, replicas: u32, check_ms: u64) -> pb::ServiceSpec {
    pb::ServiceSpec {
        name: name.into(),
        image: crate::docker::test_image(),
        command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            .map(String::from)
            .to_vec(),
        replicas: Some(replicas),
        ports: vec![pb::PortSpec {
            container_port: 8080,
            host_ip: "127.0.0.1".into(),
            ..Default::default()
        }],
        health_check: Some(pb::HealthCheck {
            test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
                .map(String::from)
                .to_vec(),
            interval: millis(check_ms),
            timeout: millis(1000),
            retries: 3,
            ..Default::default()
        }),
        stop_grace_period: millis(1000),
        ..Default::default()
    }
}

/// [`http_service`] with two replicas checked every 300 ms, updated stop-first one at
/// a time with a 1 s monitor period and a 20 s healthy deadline.
pub fn rolling_http_service(name: &str) -> pb::ServiceSpec {
    pb::ServiceSpec {
        update: Some(pb::UpdatePolicy {
            parallelism: 1,
            order: pb::UpdateOrder::StopFirst as i32,
            monitor: millis(1000),
            healthy_deadline: millis(20_000),
            ..Default::default()
        }),
        ..http_service(name, 2, 300)
    }
}
