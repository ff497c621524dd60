//! The guard table and the whitelist, checked for every phase, operation and verb.

use super::*;

fn phases() -> Vec<Phase> {
    vec![
        Phase::Unknown,
        Phase::Creating,
        Phase::Created,
        Phase::Running,
        Phase::Pausing,
        Phase::Paused,
        Phase::Stopped(StopCause::Exited),
        Phase::Stopped(StopCause::ByUser),
        Phase::Checkpointed,
        Phase::Deleted,
    ]
}

fn ops() -> Vec<Operation> {
    vec![
        Operation::Idle,
        Operation::Starting,
        Operation::Checkpointing { exit: false },
        Operation::Checkpointing { exit: true },
        Operation::RestartPending(SpawnHandle::default()),
        Operation::Restarting,
        Operation::Deleting,
    ]
}

/// The whole table, written out as expectations: every (phase, op, verb) triple.
fn expected(phase: Phase, op: Operation, verb: Verb) -> bool {
    use Operation as O;
    use Phase as P;
    let stopped = matches!(phase, P::Stopped(_) | P::Checkpointed);
    let deleting = op == O::Deleting;
    if phase == P::Deleted {
        return verb == Verb::Wait;
    }
    match verb {
        Verb::Wait | Verb::Pids | Verb::CloseStdin => true,
        Verb::Init => phase == P::Unknown && op == O::Idle,
        Verb::Start => phase == P::Created && op == O::Idle,
        Verb::Exec => phase == P::Running && !deleting,
        Verb::Pause => phase == P::Running && !deleting && !matches!(op, O::Checkpointing { .. }),
        Verb::Resume => phase == P::Paused && !deleting,
        Verb::Update => matches!(phase, P::Created | P::Running | P::Paused) && !deleting,
        Verb::Checkpoint => phase == P::Running && op == O::Idle,
        Verb::Kill | Verb::Stats => !stopped,
        Verb::Restart => stopped && matches!(op, O::Idle | O::RestartPending(_)),
        Verb::Delete { force } => {
            let busy = phase == P::Creating
                || matches!(op, O::Deleting | O::Starting | O::Checkpointing { .. });
            let live = matches!(phase, P::Running | P::Pausing | P::Paused | P::Unknown);
            !busy && (force || !live)
        }
    }
}

#[test]
fn every_state_answers_every_verb_as_the_table_says() {
    for phase in phases() {
        for op in ops() {
            let life = Lifecycle { phase, op };
            for verb in Verb::ALL {
                let got = life.allows(verb);
                assert_eq!(
                    got.is_ok(),
                    expected(phase, op, verb),
                    "{phase:?} / {op:?} / {verb:?}: {got:?}"
                );
                if let Err(refusal) = got {
                    let text = refusal.into_error("ns/c").to_string();
                    assert!(text.contains("ns/c"), "{text}");
                    assert!(text.contains(&verb.to_string()), "{text}");
                }
            }
        }
    }
}

#[test]
fn refusals_name_the_state_and_a_way_out() {
    let paused = Lifecycle {
        phase: Phase::Paused,
        op: Operation::Idle,
    };
    let e = paused
        .allows(Verb::Checkpoint)
        .unwrap_err()
        .into_error("d/web");
    assert!(matches!(&e, Error::WrongState(m) if m.contains("paused") && m.contains("resume")));
    let running = Lifecycle {
        phase: Phase::Running,
        op: Operation::Idle,
    };
    let e = running
        .allows(Verb::Delete { force: false })
        .unwrap_err()
        .into_error("d/web");
    assert!(
        matches!(&e, Error::WrongState(m) if m.contains("running") && m.contains("--force")),
        "{e}"
    );
    let starting = Lifecycle {
        phase: Phase::Created,
        op: Operation::Starting,
    };
    let e = starting
        .allows(Verb::Start)
        .unwrap_err()
        .into_error("d/web");
    assert!(
        matches!(&e, Error::WrongState(m) if m.contains("starting")),
        "{e}"
    );
}

#[test]
fn the_whitelist_refuses_steps_that_cannot_happen() {
    let mut life = Lifecycle::default();
    assert!(
        life.transition(Phase::Paused).is_ok(),
        "adoption may find it paused"
    );
    let mut stopped = Lifecycle {
        phase: Phase::Stopped(StopCause::Exited),
        op: Operation::Idle,
    };
    let e = stopped.transition(Phase::Paused).unwrap_err();
    assert!(e.to_string().contains("invalid state transition"), "{e}");
    assert_eq!(stopped.phase, Phase::Stopped(StopCause::Exited));
    let mut deleted = Lifecycle {
        phase: Phase::Deleted,
        op: Operation::Idle,
    };
    for to in phases().into_iter().filter(|p| *p != Phase::Deleted) {
        assert!(deleted.transition(to).is_err(), "deleted -> {to:?}");
    }
    let mut checkpointed = Lifecycle {
        phase: Phase::Checkpointed,
        op: Operation::Idle,
    };
    assert!(checkpointed.transition(Phase::Paused).is_err());
    assert!(checkpointed.transition(Phase::Deleted).is_ok());
}

#[test]
fn every_live_phase_can_stop_and_liveness_matches_the_wire_status() {
    for phase in phases() {
        let life = Lifecycle {
            phase,
            op: Operation::Idle,
        };
        let live = matches!(
            phase,
            Phase::Created | Phase::Running | Phase::Pausing | Phase::Paused
        );
        assert_eq!(life.is_live(), live, "{phase:?}");
        if life.is_live() {
            let mut l = life;
            assert!(l.transition(Phase::Stopped(StopCause::Exited)).is_ok());
        }
    }
}
