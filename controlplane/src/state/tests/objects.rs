//! Migrations, secrets, configs, leadership.

use constellation_proto::v1::{
    ChangeKind, CommandErrorCode, ConfigSpec, DeleteConfigCommand, DeleteSecretCommand,
    LeadershipCommand, Migration, MigrationPhase, PutConfigCommand, PutMigrationCommand,
    PutSecretCommand, SecretSpec, Topic, command::Op, command_result::Outcome, event::Payload,
};

use super::*;
use crate::state::services::hex_sha256;

fn migration(id: &str, service: &str, started: i64) -> Migration {
    Migration {
        id: id.into(),
        service_name: service.into(),
        phase: MigrationPhase::Pending as i32,
        started_at: Some(at(started)),
        ..Default::default()
    }
}

fn put_migration(state: &mut State, time: i64, m: Migration) -> CommandResult {
    apply(
        state,
        time,
        Op::PutMigration(PutMigrationCommand { migration: Some(m) }),
    )
}

fn put_secret(state: &mut State, time: i64, name: &str, data: &[u8]) -> CommandResult {
    let op = Op::PutSecret(PutSecretCommand {
        secret: Some(SecretSpec {
            name: name.into(),
            data: data.to_vec(),
            labels: [("team".to_string(), "core".to_string())].into(),
        }),
    });
    apply(state, time, op)
}

fn put_config(state: &mut State, time: i64, name: &str, data: &[u8]) -> CommandResult {
    let op = Op::PutConfig(PutConfigCommand {
        config: Some(ConfigSpec {
            name: name.into(),
            data: data.to_vec(),
            ..Default::default()
        }),
    });
    apply(state, time, op)
}

#[test]
fn migrations_upsert_and_query() {
    let mut state = State::new();
    assert_error(
        &put_migration(&mut state, 1, Migration::default()),
        CommandErrorCode::InvalidArgument,
    );
    put_migration(&mut state, 1, migration("m2", "web", 20));
    put_migration(&mut state, 1, migration("m1", "web", 10));
    put_migration(&mut state, 1, migration("m3", "db", 30));
    let mut progressed = migration("m1", "web", 10);
    progressed.set_phase(MigrationPhase::TransferringImage);
    let r = put_migration(&mut state, 2, progressed.clone());
    assert_eq!(r.outcome, Some(Outcome::Migration(progressed.clone())));
    let index = state.event_index();
    put_migration(&mut state, 3, progressed);
    assert_eq!(state.event_index(), index, "identical upsert");

    let kinds: Vec<ChangeKind> = state
        .events_after(0, &[Topic::Migration])
        .expect("retained")
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::Migration(m)) => Some(m.kind()),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Created,
            ChangeKind::Created,
            ChangeKind::Created,
            ChangeKind::Updated
        ]
    );
    assert_eq!(state.migration("m3").map(|m| m.id.as_str()), Some("m3"));
    assert_eq!(
        state.migration("web").map(|m| m.id.as_str()),
        Some("m2"),
        "latest started"
    );
    assert!(state.migration("nope").is_none());
    let ids = |s: Option<&str>| -> Vec<String> {
        state.migrations(s).iter().map(|m| m.id.clone()).collect()
    };
    assert_eq!(ids(None), ["m1", "m2", "m3"]);
    assert_eq!(ids(Some("web")), ["m1", "m2"]);
}

#[test]
fn secrets_never_show_data() {
    let mut state = State::new();
    let r = put_secret(&mut state, 5, "db-password", b"hunter2");
    assert!(r.changed);
    let Some(Outcome::Secret(meta)) = &r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(meta.version, 1);
    assert_eq!(meta.digest, hex_sha256(b"hunter2"));
    assert_eq!(meta.updated_at, Some(at(5)));
    assert_eq!(meta.labels.get("team").map(String::as_str), Some("core"));
    assert_eq!(r.index, 0, "secrets emit no events");
    assert_eq!(state.secret_data("db-password"), Some(&b"hunter2"[..]));

    let r = put_secret(&mut state, 6, "db-password", b"hunter2");
    assert!(!r.changed);
    assert_eq!(state.secret_meta("db-password").map(|m| m.version), Some(1));
    put_secret(&mut state, 7, "db-password", b"correct horse");
    let metas = state.secret_metas();
    assert_eq!(metas.len(), 1);
    assert_eq!((metas[0].version, metas[0].updated_at), (2, Some(at(7))));
    assert!(!format!("{metas:?}").contains("correct horse"));

    let del = |name: &str| Op::DeleteSecret(DeleteSecretCommand { name: name.into() });
    assert_error(
        &apply(&mut state, 8, del("nope")),
        CommandErrorCode::NotFound,
    );
    assert_eq!(
        apply(&mut state, 8, del("db-password")).outcome,
        Some(Outcome::Done(true))
    );
    assert!(state.secret_data("db-password").is_none());
    assert_error(
        &apply(&mut state, 8, Op::PutSecret(PutSecretCommand::default())),
        CommandErrorCode::InvalidArgument,
    );
    assert_eq!(state.event_index(), 0);
}

#[test]
fn configs() {
    let mut state = State::new();
    let r = put_config(&mut state, 5, "nginx.conf", b"a");
    let Some(Outcome::Config(config)) = &r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!((config.version, config.updated_at), (1, Some(at(5))));
    put_config(&mut state, 6, "nginx.conf", b"a");
    put_config(&mut state, 7, "nginx.conf", b"b");
    put_config(&mut state, 7, "app.conf", b"c");
    let listed: Vec<(String, u64)> = state
        .configs()
        .map(|c| {
            (
                c.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                c.version,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [("app.conf".to_string(), 1), ("nginx.conf".to_string(), 2)]
    );
    let del = |name: &str| Op::DeleteConfig(DeleteConfigCommand { name: name.into() });
    assert_error(
        &apply(&mut state, 8, del("nope")),
        CommandErrorCode::NotFound,
    );
    assert_ok(&apply(&mut state, 8, del("app.conf")));
    assert!(state.config("app.conf").is_none());
    assert_error(
        &put_config(&mut state, 8, "", b"x"),
        CommandErrorCode::InvalidArgument,
    );
}

#[test]
fn leadership_is_recorded_once_per_change() {
    let mut state = State::new();
    let leadership = LeadershipCommand {
        leader_id: 2,
        term: 5,
        leader_api_addr: "10.0.0.2:7443".into(),
    };
    apply(&mut state, 1, Op::Leadership(leadership.clone()));
    apply(&mut state, 2, Op::Leadership(leadership.clone()));
    assert_eq!(state.leadership(), Some(&leadership));
    let events = events_since(&state, 0);
    assert_eq!(events.len(), 1);
    let Some(Payload::Leadership(e)) = &events[0].payload else {
        panic!("{events:?}")
    };
    assert_eq!(
        (e.leader_id, e.term, e.leader_api_addr.as_str()),
        (2, 5, "10.0.0.2:7443")
    );
    assert_eq!(events[0].time, Some(at(1)));
}
