//! Batches (group commit): each command applies as if it were its own entry.

use super::*;
use constellation_proto::v1::{ApplyServiceCommand, CommandBatch, DeleteServiceCommand};

fn apply_service(time: i64, name: &str) -> Command {
    command(
        time,
        Op::ApplyService(ApplyServiceCommand {
            spec: Some(spec(name, "nginx")),
            expected_version: None,
        }),
    )
}

fn delete_service(time: i64, name: &str) -> Command {
    command(
        time,
        Op::DeleteService(DeleteServiceCommand { name: name.into() }),
    )
}

#[test]
fn a_batch_applies_like_its_commands_one_by_one() {
    let commands = vec![
        apply_service(1, "web"),
        delete_service(2, "missing"),
        apply_service(3, "api"),
        delete_service(4, "web"),
    ];
    let mut one_by_one = State::new();
    let expected: Vec<CommandResult> = commands.iter().map(|c| one_by_one.apply(c)).collect();

    let mut batched = State::new();
    let result = apply(&mut batched, 5, Op::Batch(CommandBatch { commands }));
    assert_ok(&result);
    assert_eq!(result.batch, expected);
    assert_eq!(batched, one_by_one);
    assert_error(&result.batch[1], CommandErrorCode::NotFound);
    assert_eq!(result.index, result.batch[3].index);
}

#[test]
fn a_nested_batch_is_refused_alone() {
    let nested = command(
        2,
        Op::Batch(CommandBatch {
            commands: vec![apply_service(2, "inner")],
        }),
    );
    let mut state = State::new();
    let result = apply(
        &mut state,
        3,
        Op::Batch(CommandBatch {
            commands: vec![apply_service(1, "web"), nested, apply_service(3, "api")],
        }),
    );
    assert_ok(&result.batch[0]);
    assert_error(&result.batch[1], CommandErrorCode::InvalidArgument);
    assert_ok(&result.batch[2]);
    let names: Vec<_> = state
        .services()
        .map(|s| s.spec.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(names, ["api", "web"]);
}
