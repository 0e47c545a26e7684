//! The inbox reads Temporal visibility: each run's memo summarizes its open
//! approvals, so listing needs no worker and asks no run.

use crate::gated_runs::pay_agent;
use crate::harness::*;
use anyhow::{Result, ensure};
use countersign_approvals::{ApproveOptions, PageRequest, PendingFilter, ReviewerFilter};
use countersign_policy::run::AgentRunInput;
use countersign_proto::{PendingApproval, RunStatus, canonical_json, struct_to_json};
use std::collections::BTreeSet;

#[tokio::test]
async fn the_inbox_lists_every_approval_with_every_worker_stopped() -> Result<()> {
    let env = TestEnv::new("inbox").await?;
    // A requester of this test's own, so the shared server's other waiting
    // runs stay out of the list.
    let requester = format!("{}@example.com", unique("inbox-owner"));
    let mine = PendingFilter {
        requester: Some(requester.clone()),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for invoice in 1..=3 {
        let id = unique("inbox-run");
        let input = AgentRunInput::inline(
            env.agent(&pay_agent())?,
            &format!("pay invoice {invoice}"),
            &requester,
        );
        env.approvals
            .start_run(input, &id, Some(&env.task_queue))
            .await?;
        ids.push(id);
    }

    // With a worker process: the runs open their approvals and publish them.
    let worker = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let mut full: Vec<PendingApproval> = Vec::new();
    for id in &ids {
        full.push(env.pending(id, 1).await?.remove(0));
    }
    wait_for("three approvals in visibility", || async {
        let listing = env.approvals.list_pending(&mine).await.ok()?;
        (listing.approvals.len() == 3).then_some(())
    })
    .await?;
    worker.kill().await?;

    // No worker polls this task queue any more: the list reads visibility.
    let listing = env.approvals.list_pending(&mine).await?;
    assert_eq!(listing.queried_runs, 0, "no run was asked");
    assert!(listing.incomplete.is_empty(), "{:?}", listing.incomplete);
    let listed: BTreeSet<&str> = listing
        .approvals
        .iter()
        .map(|a| a.approval_id.as_str())
        .collect();
    let expected: BTreeSet<&str> = full.iter().map(|a| a.approval_id.as_str()).collect();
    assert_eq!(listed, expected);
    for summary in &listing.approvals {
        let whole = full
            .iter()
            .find(|a| a.approval_id == summary.approval_id)
            .unwrap();
        assert!(summary.arguments.is_none());
        let arguments = canonical_json(&struct_to_json(whole.arguments.as_ref().unwrap()));
        assert_eq!(summary.arguments_excerpt, arguments);
        assert_eq!(summary.arguments_sha256, whole.arguments_sha256);
        assert_eq!(summary.tool, whole.tool);
        assert_eq!(summary.effect_class, "money");
        assert_eq!(summary.rule, whole.rule);
        assert_eq!(summary.agent, "t-pay");
        assert_eq!(summary.requester, requester);
        assert_eq!(summary.expires_at, whole.expires_at);
        assert_eq!(summary.required_approvals, whole.required_approvals);
    }

    // Pages of one run each: three pages, each approval once.
    let mut page = PageRequest {
        page_size: Some(1),
        page_token: None,
    };
    let mut walked = Vec::new();
    loop {
        let next = env.approvals.list_pending_page(&mine, &page).await?;
        ensure!(next.approvals.len() <= 1, "a page of one run");
        walked.extend(next.approvals.into_iter().map(|a| a.approval_id));
        match next.next_page_token {
            Some(token) => page.page_token = Some(token),
            None => break,
        }
        ensure!(walked.len() <= 3, "more pages than runs");
    }
    assert_eq!(walked.iter().collect::<BTreeSet<_>>().len(), 3);

    // Filters narrow it: by tool, and "waiting for" a reviewer (anyone may
    // decide these; the requester too, since the agent asks no separation).
    let by_tool = |tool: &str| PendingFilter {
        tool: Some(tool.into()),
        ..mine.clone()
    };
    assert_eq!(
        env.approvals
            .list_pending(&by_tool("pay"))
            .await?
            .approvals
            .len(),
        3
    );
    assert!(
        env.approvals
            .list_pending(&by_tool("notify"))
            .await?
            .approvals
            .is_empty()
    );
    let for_bob = PendingFilter {
        approver: Some(ReviewerFilter {
            reviewer: "bob@example.com".into(),
            groups: vec!["finance".into()],
        }),
        ..mine.clone()
    };
    assert_eq!(
        env.approvals.list_pending(&for_bob).await?.approvals.len(),
        3
    );

    // The CLI, worker stopped: every page as one JSON array, no warning.
    let out = countersign(&["approvals", "list", "--json", "--requester", &requester]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let printed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    assert_eq!(printed.len(), 3);
    assert!(printed.iter().all(|a| a["argumentsExcerpt"].is_string()));
    // For people, a page at a time, and how to get the next.
    let out = countersign(&[
        "approvals",
        "list",
        "--requester",
        &requester,
        "--page-size",
        "2",
    ])
    .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert!(stderr.contains("--page-token "), "{stderr}");

    // Decisions still go to the runs: approve one, deny the others; the list
    // empties as the runs move on.
    let worker = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let decided = async {
        let paid = &full[0];
        env.approvals
            .approve(
                &paid.approval_id,
                "bob@example.com",
                ApproveOptions::default(),
            )
            .await?;
        for other in &full[1..] {
            env.approvals
                .deny(&other.approval_id, "bob@example.com", "not this month")
                .await?;
        }
        wait_for("an empty inbox", || async {
            let listing = env.approvals.list_pending(&mine).await.ok()?;
            listing.approvals.is_empty().then_some(())
        })
        .await?;
        let state = env.result(&ids[0]).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert_eq!(env.sink.received("/payments").len(), 1);
        env.record_and_replay(&ids[0], "inbox_index").await
    }
    .await;
    worker.kill().await?;
    decided
}
