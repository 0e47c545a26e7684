//! Listing pending approvals from Temporal visibility alone.
//!
//! Each run keeps summaries of its open approvals in its memo and the
//! reviewers who may decide them in `CountersignApprovers`
//! (`countersign_proto::inbox`), so a page of the inbox is one
//! `ListWorkflowExecutions` call: no workflow is queried, and the list works
//! with every worker stopped. Runs recorded before that index (no memo) are
//! still asked by query, until they end.

use crate::{Approvals, ApprovalsError, QUERY_TIMEOUT, tokio_timeout};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign_proto::contract::{
    GATE_WORKFLOW_TYPE, SA_AGENT, SA_APPROVERS, SA_PENDING_TOOLS, SA_REQUESTER, SA_STATUS,
    WORKFLOW_TYPE, status_keyword,
};
use countersign_proto::inbox::{ANY_REVIEWER, MEMO_APPROVALS, may_decide};
use countersign_proto::{ApprovalSummaries, PendingApproval, RunStatus};
use temporalio_client::NamespacedClient;
use temporalio_client::grpc::WorkflowService;
use temporalio_client::tonic::{self, IntoRequest};
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::temporal::api::workflow::v1::WorkflowExecutionInfo;
use temporalio_common::protos::temporal::api::workflowservice::v1::ListWorkflowExecutionsRequest;

/// The page size when none is given.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest page size (Temporal's own default cap on visibility pages).
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The longest filter value (reviewer ids, agent and tool names, requesters).
pub const MAX_FILTER_CHARS: usize = 256;
/// The most groups a reviewer filter carries.
pub const MAX_FILTER_GROUPS: usize = 64;
/// The longest page token accepted (as sent: URL-safe base64).
pub const MAX_PAGE_TOKEN_CHARS: usize = 4096;

/// Which pending approvals to list; every field narrows the list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PendingFilter {
    /// Only approvals of runs of this agent.
    pub agent: Option<String>,
    /// Only approvals of this tool (e.g. `pay`, `gmail.send`).
    pub tool: Option<String>,
    /// Only approvals of runs this person started.
    pub requester: Option<String>,
    /// Only approvals this reviewer may decide ("waiting for me").
    pub approver: Option<ReviewerFilter>,
}

/// A reviewer, as the inbox filters for them: the approvals naming them (or
/// open to any reviewer); not their own request where separation of duties
/// applies, nor one they already approved. Their groups widen the
/// visibility query (`CountersignApprovers` carries groups too); the
/// approvals are then narrowed by `countersign_proto::inbox::may_decide`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewerFilter {
    /// The reviewer's id (as decisions name it).
    pub reviewer: String,
    /// The reviewer's groups.
    pub groups: Vec<String>,
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageRequest {
    /// How many runs a page reads (default [`DEFAULT_PAGE_SIZE`], at most
    /// [`MAX_PAGE_SIZE`]). A page holds the open approvals of that many
    /// runs: usually one each.
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page; `None` for the first.
    pub page_token: Option<String>,
}

/// One page of the inbox.
#[derive(Debug, Clone, Default)]
pub struct PendingPage {
    /// The pending approvals, as summaries (`arguments_excerpt` set,
    /// `arguments` absent; show one for all of it), newest run first.
    pub approvals: Vec<PendingApproval>,
    /// Where the next page starts; `None` on the last page.
    pub next_page_token: Option<String>,
    /// Runs on this page whose approvals are not all listed, and why
    /// (workflow id, problem): more open approvals than the memo holds, or
    /// a run from before the inbox index that did not answer its query.
    pub incomplete: Vec<(String, String)>,
    /// How many runs were asked by query (runs from before the inbox
    /// index); zero for runs started by this version.
    pub queried_runs: usize,
}

impl PendingFilter {
    /// Checks every value, so that what reaches the visibility query is a
    /// plain literal and no value is unbounded.
    fn check(&self) -> Result<(), ApprovalsError> {
        let named = [
            ("agent", &self.agent),
            ("tool", &self.tool),
            ("requester", &self.requester),
        ];
        for (field, value) in named {
            if let Some(value) = value {
                check_value(field, value)?;
            }
        }
        if let Some(approver) = &self.approver {
            check_value("approver", &approver.reviewer)?;
            if approver.groups.len() > MAX_FILTER_GROUPS {
                return Err(ApprovalsError::InvalidListing(format!(
                    "approver: more than {MAX_FILTER_GROUPS} groups"
                )));
            }
            for group in &approver.groups {
                check_value("approver group", group)?;
            }
        }
        Ok(())
    }

    /// The visibility query: waiting runs and gates, narrowed by the filter.
    /// Open ones only: a run terminated (or timed out) while waiting keeps
    /// its last `AwaitingApproval`, but nobody can decide anything in it.
    fn query(&self) -> String {
        let mut query = format!(
            "(WorkflowType = '{WORKFLOW_TYPE}' OR WorkflowType = '{GATE_WORKFLOW_TYPE}') AND ExecutionStatus = 'Running' AND {SA_STATUS} = '{}'",
            status_keyword(RunStatus::AwaitingApproval)
        );
        let conditions = [
            (SA_AGENT, &self.agent),
            (SA_PENDING_TOOLS, &self.tool),
            (SA_REQUESTER, &self.requester),
        ];
        for (attribute, value) in conditions {
            if let Some(value) = value {
                query.push_str(&format!(" AND {attribute} = '{value}'"));
            }
        }
        if let Some(approver) = &self.approver {
            let mut values = vec![ANY_REVIEWER, approver.reviewer.as_str()];
            values.extend(approver.groups.iter().map(String::as_str));
            let list: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
            query.push_str(&format!(" AND {SA_APPROVERS} IN ({})", list.join(", ")));
        }
        query
    }

    /// Whether one approval of a listed run passes the filter (the run's
    /// attributes matched already; a run may hold approvals of other tools,
    /// or ones this reviewer may not decide).
    fn admits(&self, approval: &PendingApproval) -> bool {
        self.tool
            .as_ref()
            .is_none_or(|tool| approval.tool.as_ref().is_some_and(|t| &t.name == tool))
            && self
                .approver
                .as_ref()
                .is_none_or(|a| may_decide(approval, &a.reviewer))
    }
}

/// The page token handed out: Temporal's token and a checksum binding it to
/// the listing's query, so a token that was not given for this listing
/// (mistyped, fuzzed, or from other filters) is refused as bad input instead
/// of reaching Temporal, which would answer with an internal error.
fn seal_page_token(temporal_token: &[u8], query: &str) -> String {
    let mut sealed = temporal_token.to_vec();
    sealed.extend_from_slice(&page_token_checksum(temporal_token, query));
    URL_SAFE_NO_PAD.encode(sealed)
}

/// Temporal's token inside a page token [`seal_page_token`] gave for `query`.
fn open_page_token(token: &str, query: &str) -> Result<Vec<u8>, ApprovalsError> {
    // Not given for this listing (made up, mistyped, another filter's):
    // there is no such page.
    let refused = || {
        ApprovalsError::UnknownPage(
            "page token is not one this listing gave: list again without it".into(),
        )
    };
    if token.len() > MAX_PAGE_TOKEN_CHARS {
        return Err(ApprovalsError::InvalidListing(
            "page token is longer than 4096 characters".into(),
        ));
    }
    let sealed = URL_SAFE_NO_PAD.decode(token).map_err(|_| refused())?;
    let split = sealed
        .len()
        .checked_sub(PAGE_TOKEN_CHECKSUM_BYTES)
        .ok_or_else(refused)?;
    let (temporal_token, checksum) = sealed.split_at(split);
    if temporal_token.is_empty() || checksum != page_token_checksum(temporal_token, query) {
        return Err(refused());
    }
    Ok(temporal_token.to_vec())
}

const PAGE_TOKEN_CHECKSUM_BYTES: usize = 8;

fn page_token_checksum(temporal_token: &[u8], query: &str) -> [u8; PAGE_TOKEN_CHECKSUM_BYTES] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"countersign page token v1\n")
        .chain_update(query.as_bytes())
        .chain_update(b"\n")
        .chain_update(temporal_token)
        .finalize();
    let mut checksum = [0; PAGE_TOKEN_CHECKSUM_BYTES];
    checksum.copy_from_slice(&digest[..PAGE_TOKEN_CHECKSUM_BYTES]);
    checksum
}

fn check_value(field: &str, value: &str) -> Result<(), ApprovalsError> {
    let problem = if value.is_empty() {
        Some("is empty")
    } else if value.chars().count() > MAX_FILTER_CHARS {
        Some("is longer than 256 characters")
    } else if value
        .chars()
        .any(|c| c == '\'' || c == '"' || c == '\\' || c.is_control())
    {
        Some("holds a quote, a backslash or a control character")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ApprovalsError::InvalidListing(format!("{field} {problem}"))),
        None => Ok(()),
    }
}

impl Approvals {
    /// One page of pending approvals, from Temporal visibility: the runs and
    /// gates awaiting approval that match `filter`, with the summaries
    /// their memos hold. No run is queried (but those from before the inbox
    /// index, see [`PendingPage::queried_runs`]), so it works with every
    /// worker stopped; visibility may lag a decision by a moment, and a
    /// decision on something already closed answers `ALREADY_DECIDED`.
    pub async fn list_pending_page(
        &self,
        filter: &PendingFilter,
        page: &PageRequest,
    ) -> Result<PendingPage, ApprovalsError> {
        filter.check()?;
        let page_size = page.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(ApprovalsError::InvalidListing(format!(
                "page size must be 1 to {MAX_PAGE_SIZE}"
            )));
        }
        let query = filter.query();
        let token = match &page.page_token {
            None => Vec::new(),
            Some(token) => open_page_token(token, &query)?,
        };
        let request = ListWorkflowExecutionsRequest {
            namespace: self.client.namespace(),
            page_size: page_size as i32,
            next_page_token: token,
            query: query.clone(),
        };
        let mut client = self.client.clone();
        let response =
            WorkflowService::list_workflow_executions(&mut client, request.into_request())
                .await
                .map_err(|status| match status.code() {
                    tonic::Code::InvalidArgument if page.page_token.is_some() => {
                        ApprovalsError::InvalidListing(
                            "page token is not one this listing gave".into(),
                        )
                    }
                    _ => ApprovalsError::Temporal(format!(
                        "listing pending approvals: {}",
                        status.message()
                    )),
                })?
                .into_inner();

        let mut listing = PendingPage {
            next_page_token: (!response.next_page_token.is_empty())
                .then(|| seal_page_token(&response.next_page_token, &query)),
            ..Default::default()
        };
        let mut unindexed = Vec::new();
        for execution in &response.executions {
            let workflow_id = execution
                .execution
                .as_ref()
                .map(|e| e.workflow_id.clone())
                .unwrap_or_default();
            match summaries_of(execution) {
                Some(Ok(summaries)) => {
                    if summaries.omitted > 0 {
                        listing.incomplete.push((
                            workflow_id.clone(),
                            format!(
                                "{} more open approvals than its memo lists: `countersign run show {workflow_id}` has them all",
                                summaries.omitted
                            ),
                        ));
                    }
                    listing
                        .approvals
                        .extend(summaries.approvals.into_iter().filter(|a| filter.admits(a)));
                }
                Some(Err(problem)) => listing.incomplete.push((workflow_id, problem)),
                None => unindexed.push(workflow_id),
            }
        }
        // Runs from before the inbox index: asked, concurrently.
        listing.queried_runs = unindexed.len();
        let answers =
            futures::future::join_all(unindexed.into_iter().map(|workflow_id| async move {
                let answer = tokio_timeout(QUERY_TIMEOUT, self.pending_of_run(&workflow_id)).await;
                (workflow_id, answer)
            }))
            .await;
        for (workflow_id, answer) in answers {
            match answer {
                Some(Ok(approvals)) => listing
                    .approvals
                    .extend(approvals.iter().map(countersign_proto::inbox::summary).filter(|a| filter.admits(a))),
                // The run closed between the list and the query.
                Some(Err(ApprovalsError::NotFound(_))) => {}
                Some(Err(e)) => listing.incomplete.push((workflow_id, e.to_string())),
                None => listing.incomplete.push((
                    workflow_id,
                    format!(
                        "started before the inbox index and did not answer within {QUERY_TIMEOUT:?} (is a worker running?)"
                    ),
                )),
            }
        }
        Ok(listing)
    }

    /// Every pending approval matching `filter`: all pages of
    /// [`Approvals::list_pending_page`], read one after another.
    pub async fn list_pending(
        &self,
        filter: &PendingFilter,
    ) -> Result<PendingPage, ApprovalsError> {
        let mut all = PendingPage::default();
        let mut page = PageRequest {
            page_size: Some(MAX_PAGE_SIZE),
            page_token: None,
        };
        loop {
            let next = self.list_pending_page(filter, &page).await?;
            all.approvals.extend(next.approvals);
            all.incomplete.extend(next.incomplete);
            all.queried_runs += next.queried_runs;
            match next.next_page_token {
                Some(token) => page.page_token = Some(token),
                None => return Ok(all),
            }
        }
    }
}

/// The summaries in a listed run's memo: `None` when it has none (a run
/// from before the inbox index), an error when they do not decode.
fn summaries_of(execution: &WorkflowExecutionInfo) -> Option<Result<ApprovalSummaries, String>> {
    let payload: &Payload = execution.memo.as_ref()?.fields.get(MEMO_APPROVALS)?;
    Some(
        serde_json::from_slice::<ApprovalSummaries>(&payload.data)
            .map_err(|e| format!("its memo's `{MEMO_APPROVALS}` does not decode: {e}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_lists_waiting_runs_and_gates_narrowed_by_the_filter() {
        assert_eq!(
            PendingFilter::default().query(),
            "(WorkflowType = 'AgentRun' OR WorkflowType = 'ApprovalGate') AND ExecutionStatus = 'Running' AND CountersignStatus = 'AwaitingApproval'"
        );
        let filter = PendingFilter {
            agent: Some("payments".into()),
            tool: Some("gmail.send".into()),
            requester: Some("carol@example.com".into()),
            approver: Some(ReviewerFilter {
                reviewer: "bob@example.com".into(),
                groups: vec!["finance".into()],
            }),
        };
        assert!(filter.query().ends_with(
            " AND CountersignAgent = 'payments' AND CountersignPendingTools = 'gmail.send' AND CountersignRequester = 'carol@example.com' AND CountersignApprovers IN ('*', 'bob@example.com', 'finance')"
        ));
    }

    #[test]
    fn page_tokens_open_only_for_the_listing_that_gave_them() {
        let query = PendingFilter::default().query();
        let token = seal_page_token(b"temporal-token", &query);
        assert_eq!(open_page_token(&token, &query).unwrap(), b"temporal-token");
        let other = PendingFilter {
            agent: Some("payments".into()),
            ..Default::default()
        }
        .query();
        for (bad, query) in [
            (token.as_str(), other.as_str()),
            ("AAAAAAAAAAAAAAAAAAAA", query.as_str()),
            ("not base64!", query.as_str()),
            ("", query.as_str()),
        ] {
            assert!(
                matches!(
                    open_page_token(bad, query),
                    Err(ApprovalsError::InvalidListing(_) | ApprovalsError::UnknownPage(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn filter_values_that_could_change_the_query_are_refused() {
        for bad in [
            "a' OR 'x' = 'x",
            "a\"b",
            "a\\b",
            "a\nb",
            "",
            &"x".repeat(257),
        ] {
            let filter = PendingFilter {
                agent: Some(bad.to_string()),
                ..Default::default()
            };
            let Err(ApprovalsError::InvalidListing(message)) = filter.check() else {
                panic!("{bad:?} passed");
            };
            assert!(message.len() < 80, "{message}");
        }
        let groups = PendingFilter {
            approver: Some(ReviewerFilter {
                reviewer: "bob".into(),
                groups: vec!["g".into(); MAX_FILTER_GROUPS + 1],
            }),
            ..Default::default()
        };
        assert!(groups.check().is_err());
    }
}
