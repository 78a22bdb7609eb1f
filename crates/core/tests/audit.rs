//! The audit trail as plain data: who asked what and with which result,
//! which requests leave an entry, and warnings about discarded writes until
//! an operator acknowledges them.

use haraft_core::ops::Order;
use haraft_core::*;

mod support;
use support::*;

#[test]
fn audit_entries_record_who_asked_what_and_the_result_and_repeats_are_counted() {
    use haraft_core::ops::Request;
    use haraft_core::state::HistoryEvent;
    let mut s = cluster(Policy::default());
    let asked = Request::Switchover { from: None, to: Some("node3".into()), at_unix_ms: None, force: false };
    assert_eq!(asked.to_string(), "switchover to node3");
    let audit = |node: u64, by: &str, result: &str| Command::Audit {
        node: n(node),
        what: asked.to_string(),
        by: by.into(),
        refused: true,
        result: result.into(),
        at_unix_ms: 1_700_000_000_000,
    };
    let before = s.history.len();
    applied(&mut s, 10, audit(2, "the read token (ops@db1)", "the read role cannot switch over"));
    assert_eq!(s.history.len(), before + 1);
    let view = status::history_view(&s);
    let item = view.last().unwrap();
    assert_eq!(item.event, "request-refused");
    assert_eq!(item.by.as_deref(), Some("the read token (ops@db1)"));
    assert_eq!(item.node.as_deref(), Some("node2"));
    assert_eq!(item.result.as_deref(), Some("the read role cannot switch over"));
    assert_eq!(item.at_unix_ms, Some(1_700_000_000_000));
    assert!(item.detail.contains("asked node2: switchover to node3"), "{}", item.detail);

    // The same request again is counted on the same entry: a caller who
    // keeps asking cannot push the rest of the history out.
    for i in 0..300 {
        applied(&mut s, 11 + i, audit(2, "the read token (ops@db1)", "the read role cannot switch over"));
    }
    assert_eq!(s.history.len(), before + 1);
    assert!(matches!(s.history.back().unwrap().event, HistoryEvent::Audit { times: 301, .. }));
    assert!(status::history_view(&s).last().unwrap().detail.ends_with("(301 times in a row)"));
    // Anything different is an entry of its own.
    applied(&mut s, 400, audit(2, "certificate admin (ops@db1)", "node3 lags 48 MiB (limit 16 MiB)"));
    applied(&mut s, 401, audit(3, "certificate admin (ops@db1)", "node3 lags 48 MiB (limit 16 MiB)"));
    assert_eq!(s.history.len(), before + 3);

    // A huge field is clipped; an unknown member cannot record.
    applied(&mut s, 402, audit(1, &"é".repeat(2000), "x"));
    let HistoryEvent::Audit { by, .. } = &s.history.back().unwrap().event else { panic!() };
    assert!(by.len() <= haraft_core::state::AUDIT_FIELD_LIMIT + 3 && by.ends_with("..."), "{}", by.len());
    assert_eq!(rejected(&mut s, audit(9, "x", "y")), Rejected::UnknownMember { node: n(9) });
}

#[test]
fn requests_read_as_the_operator_gave_them() {
    use haraft_core::ops::Request;
    let cases = [
        (
            Request::Switchover { from: Some("node1".into()), to: None, at_unix_ms: None, force: true },
            "switchover from node1 (force)",
        ),
        (
            Request::Failover { to: "node2".into(), allow_data_loss: true, force: false },
            "failover to node2, data loss allowed",
        ),
        (Request::Rebuild { node: "node3".into(), full: true }, "rebuild node3 from a fresh base backup"),
        (Request::SetConfig { changes: vec![("ttl_ms".into(), "5000".into())] }, "config set ttl_ms=5000"),
        (
            Request::AddMember { id: 4, name: "node4".into(), address: "db4:7000".into() },
            "add member node4 (id 4) at db4:7000",
        ),
        (Request::RemoveMember { node: "node2".into() }, "remove member node2"),
        (Request::Pause, "pause"),
    ];
    for (request, text) in cases {
        assert_eq!(request.to_string(), text);
    }
}

#[test]
fn which_answered_requests_leave_an_audit_entry() {
    use haraft_core::ops::{OperateReply, OperateRequest, Request, audit_entry};
    let ask = |request: Request, dry_run: bool| OperateRequest { request, by: "ops@db1".into(), dry_run };
    let refused = OperateReply { refused: true, message: "no".into(), ..OperateReply::default() };
    let accepted = OperateReply { accepted: true, id: Some(7), ..OperateReply::default() };
    let add = Request::AddMember { id: 4, name: "node4".into(), address: "db4:7000".into() };
    assert_eq!(audit_entry(&ask(Request::Pause, false), &refused), Some(("pause".into(), true)));
    assert_eq!(audit_entry(&ask(Request::Pause, true), &refused), None, "a dry run asks for nothing");
    assert_eq!(audit_entry(&ask(Request::Pause, false), &accepted), None, "an operation records itself");
    assert_eq!(
        audit_entry(&ask(add.clone(), false), &accepted),
        Some(("add member node4 (id 4) at db4:7000".into(), false))
    );
    assert_eq!(audit_entry(&ask(add, true), &OperateReply::default()), None);
}

/// A rewind that discarded WAL stays in the status until an operator
/// acknowledges it; an acknowledgement covers what came before it only,
/// and with nothing to acknowledge it is refused and changes nothing.
#[test]
fn discarded_writes_are_warned_about_until_acknowledged() {
    use haraft_core::loss::Discard;
    let mut s = cluster(Policy::default());
    let op = |order| Command::Operator { order, by: "ops@db1".into(), at_unix_ms: 0 };
    assert_eq!(rejected(&mut s, op(Order::AcknowledgeLoss)), Rejected::NothingToAcknowledge);
    let report = |to: u64, commits| {
        let discard = Discard {
            diverged_at: Some(Lsn(0x100)),
            timeline: Some(TimelineId(1)),
            discarded_to: Some(Lsn(to)),
            end_known: true,
            commits: Some(commits),
        };
        Command::Report { node: n(2), event: NodeEvent::RewoundAccounted { discard }, at_unix_ms: 0 }
    };
    // Nothing written past the divergence: nothing to warn about.
    applied(&mut s, 10, report(0x100, 0));
    assert!(loss::unacknowledged(&s.history).is_empty());
    applied(&mut s, 11, report(0x4100, 7));
    let warned = loss::unacknowledged(&s.history);
    assert_eq!(warned.iter().map(|e| e.log_index).collect::<Vec<_>>(), vec![11]);
    applied(&mut s, 12, op(Order::AcknowledgeLoss));
    assert!(loss::unacknowledged(&s.history).is_empty());
    let items = status::history_view(&s);
    let ack = items.iter().find(|i| i.event == "loss-acknowledged").expect("the acknowledgement is in the history");
    assert_eq!(ack.by.as_deref(), Some("ops@db1"));
    let rewound = items.iter().rfind(|i| i.event == "rewound").unwrap();
    assert_eq!((rewound.discarded_bytes, rewound.discarded_commits), (Some(0x4000), Some(7)));
    assert_eq!(rejected(&mut s, op(Order::AcknowledgeLoss)), Rejected::NothingToAcknowledge);
    // A later discard warns again.
    applied(&mut s, 13, report(0x200, 1));
    assert_eq!(loss::unacknowledged(&s.history).len(), 1);
    applied(&mut s, 14, op(Order::AcknowledgeLoss));
    // A rebuild that replaced a diverged directory (its rewind failed)
    // warns the same way, in its own words.
    let Command::Report { event: NodeEvent::RewoundAccounted { discard }, .. } = report(0x4100, 7) else {
        unreachable!()
    };
    let rebuilt =
        Command::Report { node: n(2), event: NodeEvent::RebuiltAccounted { from: n(1), discard }, at_unix_ms: 0 };
    applied(&mut s, 15, rebuilt);
    assert_eq!(loss::unacknowledged(&s.history).len(), 1);
    let local = status::LocalRaft {
        node: n(1),
        term: 1,
        leader: Some(n(1)),
        commit_index: Some(15),
        voters: [n(1), n(2), n(3)].into(),
        consistent: true,
    };
    let status = status::build_status(&s, &local, &Default::default());
    assert_eq!(status.unacknowledged_losses.len(), 1, "{status:?}");
    assert!(
        status.unacknowledged_losses[0].starts_with("node2 rebuilt (log index 15): diverged at 0/100; discarded"),
        "{:?}",
        status.unacknowledged_losses
    );
    let item = status::history_view(&s).into_iter().rfind(|i| i.event == "rebuilt").unwrap();
    assert_eq!((item.discarded_bytes, item.discarded_commits), (Some(0x4000), Some(7)));
    assert!(item.detail.starts_with("node2 rebuilt from node1 by base backup (the old data directory is kept aside): diverged at 0/100; discarded 0/100–0/4100"), "{}", item.detail);
}
