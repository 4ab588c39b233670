//! Docker smoke tests: prove that the test daemon is reachable through bollard and that the
//! local busybox test image (`CONSTELLATION_TEST_IMAGE`, built by
//! `tests/fixtures/busybox-image/build.sh`) runs containers, exits with their code, yields
//! logs, and can serve HTTP with busybox `httpd` + `wget`.
//!
//! Without Docker these fail when `CI` is set and print `SKIPPED: no Docker` otherwise.

use std::time::Duration;

use bollard::models::ContainerCreateBody;
use constellation_tests::docker::{
    ContainerGuard, Docker, TEST_IMAGE_INDEX_HTML, collect_logs, connect_or_skip, require_image,
    test_image, unique_name, wait_for_exit,
};

const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `sh -c script` in a fresh test-image container to completion and returns
/// `(exit code, logs)`. The container is removed before returning, also on errors.
async fn run_script(docker: &Docker, prefix: &str, script: &str) -> anyhow::Result<(i64, String)> {
    let image = test_image();
    require_image(docker, &image).await?;

    let name = unique_name(prefix);
    let config = ContainerCreateBody {
        image: Some(image),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        ..Default::default()
    };
    let guard = ContainerGuard::create(docker, &name, config).await?;
    let outcome = async {
        docker.start_container(guard.name(), None).await?;
        let code = wait_for_exit(docker, guard.name(), EXIT_TIMEOUT).await?;
        let logs = collect_logs(docker, guard.name()).await?;
        anyhow::Ok((code, logs))
    }
    .await;
    // Remove before anyone asserts on the outcome; the guard's Drop covers panics.
    guard.remove().await?;
    outcome
}

#[tokio::test]
async fn busybox_container_runs_exits_zero_and_logs() -> anyhow::Result<()> {
    let Some(docker) = connect_or_skip("busybox_container_runs_exits_zero_and_logs").await? else {
        return Ok(());
    };

    let (code, logs) = run_script(&docker, "constellation-smoke", "echo hello; exit 0").await?;

    assert_eq!(code, 0, "container exited with {code}; logs:\n{logs}");
    assert!(logs.contains("hello"), "logs lack 'hello':\n{logs}");
    Ok(())
}

#[tokio::test]
async fn busybox_container_reports_nonzero_exit() -> anyhow::Result<()> {
    let Some(docker) = connect_or_skip("busybox_container_reports_nonzero_exit").await? else {
        return Ok(());
    };

    let (code, logs) =
        run_script(&docker, "constellation-smoke-fail", "echo oops >&2; exit 3").await?;

    assert_eq!(code, 3, "expected exit 3; logs:\n{logs}");
    assert!(logs.contains("oops"), "stderr missing from logs:\n{logs}");
    Ok(())
}

#[tokio::test]
async fn busybox_httpd_serves_default_index() -> anyhow::Result<()> {
    let Some(docker) = connect_or_skip("busybox_httpd_serves_default_index").await? else {
        return Ok(());
    };

    // httpd daemonizes without -f; poll with wget until it answers (max ~5 s).
    let script = "httpd -p 8080 -h /www || exit 10; \
                  for i in $(seq 1 50); do \
                    wget -q -O- http://127.0.0.1:8080/ && exit 0; sleep 0.1; \
                  done; exit 11";
    let (code, logs) = run_script(&docker, "constellation-smoke-httpd", script).await?;

    assert_eq!(
        code, 0,
        "httpd/wget script exited with {code}; logs:\n{logs}"
    );
    assert!(
        logs.contains(TEST_IMAGE_INDEX_HTML),
        "wget output lacks the default index page:\n{logs}"
    );
    Ok(())
}
