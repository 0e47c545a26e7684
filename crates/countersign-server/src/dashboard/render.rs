//! The dashboard's HTML. Every string that comes from a run (arguments, the
//! user's request, the model's reason, tool names, reviewer names, messages)
//! goes through [`Esc`]: a model can put anything in its arguments.

use super::CSRF_FIELD;
use crate::Reviewer;
use crate::metrics::Channel;
use countersign_approvals::PendingPage;
use countersign_proto::{
    ApprovalState, DecisionKind, DecisionRecord, PendingApproval, struct_to_json,
};
use std::fmt::{self, Display, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

/// HTML-escapes a string for text and (quoted) attribute positions.
pub(crate) struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Percent-encodes a path segment (approval ids may hold any character).
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// How a notice looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoticeKind {
    /// Something worked.
    Ok,
    /// Something failed; nothing was decided.
    Error,
    /// Worth knowing (e.g. runs that did not answer).
    Warn,
}

impl NoticeKind {
    fn class(self) -> &'static str {
        match self {
            NoticeKind::Ok => "ok",
            NoticeKind::Error => "error",
            NoticeKind::Warn => "warn",
        }
    }
}

/// A message at the top of the page.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub kind: NoticeKind,
    pub text: String,
}

/// What the reviewer typed into one card's forms, shown again with an error
/// when a decision was not sent or was refused.
#[derive(Debug, Clone, Default)]
pub(crate) struct Draft {
    pub approval_id: String,
    /// The arguments textarea as submitted.
    pub arguments: Option<String>,
    pub approve_reason: String,
    pub deny_reason: String,
    /// What went wrong, shown on the card.
    pub error: String,
}

/// A decision of a recent run, with the run it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct RecentDecision {
    pub workflow_id: String,
    pub agent: String,
    pub record: DecisionRecord,
}

/// The "Recent decisions" section.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recent {
    pub decisions: Vec<RecentDecision>,
    /// Runs whose state could not be read in time.
    pub silent_runs: Vec<String>,
    /// Listing the runs failed altogether.
    pub error: Option<String>,
}

/// Everything the dashboard page shows.
pub(crate) struct Page<'a> {
    pub reviewer: &'a Reviewer,
    pub csrf: &'a str,
    pub now: SystemTime,
    pub notices: Vec<Notice>,
    /// Which list and page, and which card is open.
    pub view: super::View,
    /// One page of pending approvals (summaries), or why it could not be
    /// listed.
    pub pending: Result<PendingPage, String>,
    /// The open card's approval, asked of its run, or why it could not be.
    pub opened: Option<Result<PendingApproval, String>>,
    pub recent: Recent,
    pub draft: Option<Draft>,
}

/// Why `reviewer` may not decide `a`, if they may not: the checks the
/// dashboard's decisions pass ([`crate::decisions::check`]: the run's
/// resolved approvers, separation of duties, an approval of theirs already
/// counted towards a quorum), worded as a refused POST would be.
pub(crate) fn refusal(reviewer: &Reviewer, a: &PendingApproval) -> Option<String> {
    let refused = crate::decisions::check(Channel::Dashboard, reviewer, a).err()?;
    Some(super::refusal_reason(&refused, true))
}

/// The approval's arguments as indented JSON.
pub(crate) fn pretty_arguments(a: &PendingApproval) -> String {
    a.arguments
        .as_ref()
        .map(|s| serde_json::to_string_pretty(&struct_to_json(s)).unwrap_or_default())
        .unwrap_or_else(|| "{}".into())
}

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\">\
         <title>{}</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/ui/dashboard.css\"></head>\n",
        Esc(title)
    );
}

/// The sign-in page, with an error when a token was refused.
pub(crate) fn login_page(error: Option<&str>) -> String {
    let mut out = String::new();
    head(&mut out, "Sign in · Countersign");
    out.push_str("<body><main><div class=\"login\"><h1>Countersign</h1>");
    out.push_str(
        "<p class=\"muted\">Human approval for agent tool calls. Sign in with your reviewer token.</p>",
    );
    if let Some(error) = error {
        let _ = write!(
            out,
            "<div class=\"notice error\" role=\"alert\">{}</div>",
            Esc(error)
        );
    }
    out.push_str(
        "<form method=\"post\" action=\"/login\">\
         <label for=\"token\">Reviewer token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Sign in</button></form></div></main></body></html>\n",
    );
    out
}

/// A small page for requests that cannot show the dashboard (e.g. a 403).
pub(crate) fn message_page(title: &str, text: &str) -> String {
    let mut out = String::new();
    head(&mut out, &format!("{title} · Countersign"));
    let _ = writeln!(
        out,
        "<body><main><div class=\"login\"><h1>{}</h1><p>{}</p><p><a href=\"/\">Back to the dashboard</a></p></div></main></body></html>",
        Esc(title),
        Esc(text)
    );
    out
}

/// The dashboard.
pub(crate) fn dashboard_page(page: &Page<'_>) -> String {
    let mut out = String::new();
    let pending_count = page.pending.as_ref().map_or(0, |p| p.approvals.len());
    head(
        &mut out,
        &if pending_count == 0 {
            "Countersign".to_string()
        } else {
            format!("({pending_count}) Countersign")
        },
    );
    let _ = write!(
        out,
        "<body><header class=\"topbar\"><h1>Countersign</h1><a href=\"/\">Refresh</a>\
         <span class=\"who\">Signed in as <b id=\"reviewer\">{}</b> · {}</span>\
         <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">\
         <button type=\"submit\">Sign out</button></form></header>\n<main>\n",
        Esc(&page.reviewer.id),
        if page.reviewer.groups.is_empty() {
            "no groups".to_string()
        } else {
            format!("groups: {}", Esc(&page.reviewer.groups.join(", ")))
        },
        Esc(page.csrf),
    );
    for (i, notice) in page.notices.iter().enumerate() {
        let _ = writeln!(
            out,
            "<div class=\"notice {}\"{} role=\"{}\">{}</div>",
            notice.kind.class(),
            if i == 0 { " id=\"flash\"" } else { "" },
            if notice.kind == NoticeKind::Error {
                "alert"
            } else {
                "status"
            },
            Esc(&notice.text)
        );
    }

    if let Some(opened) = &page.opened {
        out.push_str("<section id=\"opened\">");
        match opened {
            Ok(a) => {
                let draft = page
                    .draft
                    .as_ref()
                    .filter(|d| d.approval_id == a.approval_id);
                card(&mut out, page, a, draft);
            }
            Err(error) => {
                let _ = write!(
                    out,
                    "<div class=\"notice error\" role=\"alert\">Cannot show this approval: {}</div>",
                    Esc(error)
                );
            }
        }
        out.push_str("</section>\n");
    }
    pending_section(&mut out, page);
    recent_section(&mut out, page);
    out.push_str("</main></body></html>\n");
    out
}

/// The "waiting for me" / "all pending" tabs, the page's table (a row per
/// approval, opening its card), and the pager.
fn pending_section(out: &mut String, page: &Page<'_>) {
    let mine = page.view.mine();
    let view_param = if mine { "mine" } else { "all" };
    let title = if mine {
        "Waiting for me"
    } else {
        "All pending approvals"
    };
    let _ = write!(
        out,
        "<section id=\"pending\"><nav class=\"tabs\">\
         <a href=\"/?view=mine\" id=\"tab-mine\"{}>Waiting for me</a>\
         <a href=\"/?view=all\" id=\"tab-all\"{}>All pending</a></nav>",
        if mine { " class=\"current\"" } else { "" },
        if mine { "" } else { " class=\"current\"" },
    );
    let listing = match &page.pending {
        Err(error) => {
            let _ = writeln!(
                out,
                "<h2>{title}</h2><div class=\"notice error\" role=\"alert\">Cannot list pending approvals: {}</div></section>",
                Esc(error)
            );
            return;
        }
        Ok(listing) => listing,
    };
    let _ = write!(
        out,
        "<h2>{title} <span class=\"count\">({}{})</span></h2>",
        listing.approvals.len(),
        if listing.next_page_token.is_some() {
            " on this page"
        } else {
            ""
        }
    );
    if !listing.incomplete.is_empty() {
        let _ = write!(
            out,
            "<div class=\"notice warn\" id=\"incomplete\">{} run(s) awaiting approval are not fully shown<ul>",
            listing.incomplete.len()
        );
        for (workflow_id, why) in &listing.incomplete {
            let _ = write!(
                out,
                "<li><code>{}</code>: {}</li>",
                Esc(workflow_id),
                Esc(why)
            );
        }
        out.push_str("</ul></div>");
    }
    if listing.approvals.is_empty() {
        out.push_str(if mine {
            "<p class=\"empty\">Nothing is waiting for you.</p>"
        } else {
            "<p class=\"empty\">Nothing is waiting for a decision.</p>"
        });
    } else {
        out.push_str(
            "<table class=\"inbox\"><thead><tr><th>Tool</th><th>Effect</th><th>Agent</th>\
             <th>Requested by</th><th>Age</th><th>Expires in</th><th>Approvals</th></tr></thead><tbody>\n",
        );
        let mut approvals: Vec<&PendingApproval> = listing.approvals.iter().collect();
        // Newest first (the pages are newest run first).
        approvals.sort_by_key(|a| {
            std::cmp::Reverse(
                a.requested_at
                    .as_ref()
                    .map_or((0, 0), |t| (t.seconds, t.nanos)),
            )
        });
        let now = unix_seconds(page.now);
        for a in approvals {
            let tool = a.tool.as_ref().map_or("?", |t| t.name.as_str());
            let effect = effect_token(&a.effect_class);
            let left = a.expires_at.as_ref().map(|t| t.seconds - now);
            let open = format!(
                "/?view={view_param}&approval={}#opened",
                path_segment(&a.approval_id)
            );
            let _ = writeln!(
                out,
                "<tr class=\"effect-{effect}\" data-approval-id=\"{id}\">\
                 <td><a class=\"open\" href=\"{open}\"><code class=\"tool-name\">{tool}</code></a>\
                 <div class=\"excerpt\">{excerpt}</div>{caller}</td>\
                 <td><span class=\"badge effect-{effect}\">{effect_text}</span></td>\
                 <td>{agent}</td><td>{requester}</td><td>{age}</td>\
                 <td class=\"expiry{soon}\">{left}</td><td>{given} of {required}</td></tr>",
                id = Esc(&a.approval_id),
                open = Esc(&open),
                tool = Esc(tool),
                excerpt = Esc(&a.arguments_excerpt),
                caller = if a.parent_workflow_id.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<div class=\"muted\">for <code>{}</code></div>",
                        Esc(&a.parent_workflow_id)
                    )
                },
                effect_text = Esc(&a.effect_class),
                agent = Esc(&a.agent),
                requester = Esc(&a.requester),
                age = a
                    .requested_at
                    .as_ref()
                    .map_or("-".into(), |t| ago_text(now - t.seconds)),
                soon = if left.is_some_and(|l| l < 600) {
                    " soon"
                } else {
                    ""
                },
                left = Esc(&expiry_text(left)),
                given = a.approvals_given.len(),
                required = a.required_approvals.max(1),
            );
        }
        out.push_str("</tbody></table>\n");
    }
    if page.view.page_token.is_some() || listing.next_page_token.is_some() {
        out.push_str("<nav class=\"pager\">");
        if page.view.page_token.is_some() {
            let _ = write!(
                out,
                "<a href=\"/?view={view_param}\" id=\"first-page\">First page</a>"
            );
        }
        if let Some(token) = &listing.next_page_token {
            let _ = write!(
                out,
                "<a href=\"/?view={view_param}&amp;pageToken={}\" id=\"next-page\" rel=\"next\">Next page</a>",
                Esc(&path_segment(token))
            );
        }
        out.push_str("</nav>");
    }
    out.push_str("</section>\n");
}

fn card(out: &mut String, page: &Page<'_>, a: &PendingApproval, draft: Option<&Draft>) {
    let tool = a.tool.clone().unwrap_or_default();
    let effect = effect_token(&a.effect_class);
    let expires = a.expires_at.as_ref().map(|t| t.seconds);
    let left = expires.map(|e| e - unix_seconds(page.now));
    let _ = write!(
        out,
        "<article class=\"card effect-{effect}\" id=\"approval-{id_attr}\" data-approval-id=\"{id_attr}\">\
         <div class=\"card-head\"><h3><code class=\"tool-name\">{name}</code></h3>\
         <span class=\"badge effect-{effect}\">{effect_text}</span>\
         <span class=\"expiry{soon}\" title=\"{expires_at}\">{left}</span></div>\n<dl class=\"context\">",
        id_attr = Esc(&a.approval_id),
        name = Esc(&tool.name),
        effect_text = Esc(&a.effect_class),
        soon = if left.is_some_and(|l| l < 600) {
            " soon"
        } else {
            ""
        },
        expires_at = Esc(&expires.map(utc_text).unwrap_or_default()),
        left = Esc(&expiry_text(left)),
    );
    let mut row = |label: &str, html: String| {
        let _ = write!(out, "<dt>{}</dt><dd>{html}</dd>", Esc(label));
    };
    row("Agent", Esc(&a.agent).to_string());
    row(
        "Requested by",
        if a.requester.is_empty() {
            "<span class=\"muted\">unknown</span>".into()
        } else {
            Esc(&a.requester).to_string()
        },
    );
    row(
        "Tool",
        format!(
            "<code>{}</code> · kind {}{}",
            Esc(&tool.name),
            Esc(&tool.kind),
            if tool.provider.is_empty() {
                String::new()
            } else {
                format!(" · provider <code>{}</code>", Esc(&tool.provider))
            }
        ),
    );
    row("Effect class", Esc(&a.effect_class).to_string());
    row("Gated by rule", Esc(&a.rule).to_string());
    row(
        "User's request",
        format!("<span class=\"quote\">{}</span>", Esc(&a.user_request)),
    );
    row(
        "Model's reason",
        format!("<span class=\"quote\">{}</span>", Esc(&a.model_reason)),
    );
    row(
        "Run",
        format!(
            "<code>{}</code>{}",
            Esc(&a.workflow_id),
            if a.run_id.is_empty() {
                String::new()
            } else {
                format!(" <span class=\"muted\">run {}</span>", Esc(&a.run_id))
            }
        ),
    );
    if !a.parent_workflow_id.is_empty() {
        row(
            "Sub-agent of",
            format!("<code>{}</code>", Esc(&a.parent_workflow_id)),
        );
    }
    row(
        "Approver groups",
        if a.approver_groups.is_empty() {
            "any reviewer".into()
        } else {
            Esc(&a.approver_groups.join(", ")).to_string()
        },
    );
    let required = a.required_approvals.max(1);
    row(
        "Approvals",
        format!(
            "{} of {required}{}",
            a.approvals_given.len(),
            if a.approvals_given.is_empty() {
                String::new()
            } else {
                format!(" (by {})", Esc(&a.approvals_given.join(", ")))
            }
        ),
    );
    if a.separation_of_duties {
        row(
            "Separation of duties",
            "the requester may not approve".into(),
        );
    }
    let requested = a.requested_at.as_ref().map(|t| t.seconds);
    row(
        "Requested at",
        requested.map_or("-".into(), |r| {
            format!("{} ({})", utc_text(r), ago_text(unix_seconds(page.now) - r))
        }),
    );
    row("Expires at", expires.map_or("-".into(), utc_text));
    row(
        "Approval id",
        format!("<code class=\"approval-id\">{}</code>", Esc(&a.approval_id)),
    );
    row(
        "argumentsSha256",
        format!("<code class=\"sha\">{}</code>", Esc(&a.arguments_sha256)),
    );
    let arguments = pretty_arguments(a);
    let _ = write!(
        out,
        "</dl>\n<div class=\"muted\">Arguments</div><pre class=\"arguments\">{}</pre>\n",
        Esc(&arguments)
    );
    if let Some(draft) = draft.filter(|d| !d.error.is_empty()) {
        let _ = write!(
            out,
            "<div class=\"notice error card-error\" role=\"alert\">{}</div>",
            Esc(&draft.error)
        );
    }
    decide_forms(out, page, a, &arguments, draft);
    out.push_str("</article>\n");
}

fn decide_forms(
    out: &mut String,
    page: &Page<'_>,
    a: &PendingApproval,
    arguments: &str,
    draft: Option<&Draft>,
) {
    let refusal = refusal(page.reviewer, a);
    let action = format!("/ui/approvals/{}", path_segment(&a.approval_id));
    let edited = draft.and_then(|d| d.arguments.as_deref());
    let textarea = edited.unwrap_or(arguments);
    let rows = textarea.lines().count().clamp(3, 24) + 1;
    out.push_str("<div class=\"decide\">");
    if let Some(why) = &refusal {
        let _ = write!(
            out,
            "<fieldset disabled class=\"approve\"><p class=\"not-allowed\">{}</p>\
             <label>Reason <input type=\"text\" disabled></label>\
             <button type=\"button\" class=\"approve\" disabled>Approve</button></fieldset>\
             <fieldset disabled class=\"deny\"><p class=\"not-allowed\">{}</p>\
             <label>Reason <input type=\"text\" disabled></label>\
             <button type=\"button\" class=\"deny\" disabled>Deny</button></fieldset></div>",
            Esc(why),
            Esc(why)
        );
        return;
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"{action}/approve\" class=\"approve\">\
         <input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"arguments_sha256\" value=\"{sha}\">\
         <label>Reason (optional) <input type=\"text\" name=\"reason\" value=\"{reason}\" maxlength=\"2000\"></label>\
         <details{open}><summary>Edit the arguments before approving</summary>\
         <label>The call runs with these arguments (JSON object); leave them as they are to approve what is shown.\
         <textarea name=\"arguments\" rows=\"{rows}\" spellcheck=\"false\">{textarea}</textarea></label></details>",
        csrf = Esc(page.csrf),
        sha = Esc(&a.arguments_sha256),
        reason = Esc(draft.map_or("", |d| d.approve_reason.as_str())),
        open = if edited.is_some_and(|e| e != arguments) {
            " open"
        } else {
            ""
        },
        textarea = Esc(textarea),
    );
    if a.effect_class != "money" {
        out.push_str(
            "<label class=\"check\"><input type=\"checkbox\" name=\"scope\" value=\"run\"> \
             Also approve later calls of this tool with these arguments in this run</label>",
        );
    }
    let _ = write!(
        out,
        "<button type=\"submit\" class=\"approve\">Approve</button></form>\
         <form method=\"post\" action=\"{action}/deny\" class=\"deny\">\
         <input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{csrf}\">\
         <label>Reason (required; the model is told) <input type=\"text\" name=\"reason\" value=\"{reason}\" required maxlength=\"2000\"></label>\
         <button type=\"submit\" class=\"deny\">Deny</button></form></div>",
        csrf = Esc(page.csrf),
        reason = Esc(draft.map_or("", |d| d.deny_reason.as_str())),
    );
}

fn recent_section(out: &mut String, page: &Page<'_>) {
    out.push_str("<section id=\"recent\"><h2>Recent decisions</h2>");
    let recent = &page.recent;
    if let Some(error) = &recent.error {
        let _ = write!(
            out,
            "<div class=\"notice error\">Cannot list recent runs: {}</div>",
            Esc(error)
        );
    }
    if !recent.silent_runs.is_empty() {
        let _ = write!(
            out,
            "<p class=\"muted\">{} recent run(s) did not answer in time and are left out: {}</p>",
            recent.silent_runs.len(),
            Esc(&recent.silent_runs.join(", "))
        );
    }
    if recent.decisions.is_empty() {
        if recent.error.is_none() {
            out.push_str("<p class=\"empty\">No decisions in recent runs.</p>");
        }
        out.push_str("</section>\n");
        return;
    }
    out.push_str(
        "<table class=\"decisions\"><thead><tr><th>When (UTC)</th><th>Outcome</th><th>Tool</th>\
         <th>Reviewer</th><th>Channel</th><th>Reason / message</th><th>Run</th></tr></thead><tbody>",
    );
    let now = unix_seconds(page.now);
    for d in &recent.decisions {
        let r = &d.record;
        let (what, class) = decision_label(r);
        let when = r.decided_at.as_ref().map(|t| t.seconds);
        let _ = write!(
            out,
            "<tr><td title=\"{}\">{}</td><td class=\"what {class}\">{}</td><td><code>{}</code></td>\
             <td>{}</td><td>{}{}</td><td>{}{}</td><td><code>{}</code><br><span class=\"muted\">{}</span></td></tr>",
            Esc(&when.map(utc_text).unwrap_or_default()),
            Esc(&when.map_or("-".into(), |w| ago_text(now - w))),
            Esc(&what),
            Esc(if r.tool.is_empty() {
                &r.approval_id
            } else {
                &r.tool
            }),
            Esc(if r.reviewer.is_empty() {
                "-"
            } else {
                &r.reviewer
            }),
            Esc(&r.channel),
            signature_cell(r),
            if r.reason.is_empty() {
                String::new()
            } else {
                format!("“{}”<br>", Esc(&r.reason))
            },
            Esc(&r.message),
            Esc(&d.workflow_id),
            Esc(&d.agent),
        );
    }
    out.push_str("</tbody></table></section>\n");
}

/// Who signed a reviewer's decision, under its channel: "signed by <key
/// id>" or "unsigned" (nothing for timer and sticky records).
fn signature_cell(r: &DecisionRecord) -> String {
    if !matches!(r.channel.as_str(), "update" | "signal") || r.reviewer.is_empty() {
        String::new()
    } else if r.signed_by.is_empty() {
        "<br><span class=\"muted unsigned\">unsigned</span>".into()
    } else {
        format!(
            "<br><span class=\"muted signed\">signed by {}</span>",
            Esc(&r.signed_by)
        )
    }
}

/// What a decision record says happened, and a CSS class for it.
pub(crate) fn decision_label(r: &DecisionRecord) -> (String, &'static str) {
    if !r.accepted {
        return ("REJECTED".into(), "rejected");
    }
    match (r.kind(), r.resulting_state()) {
        (_, ApprovalState::Expired) => ("EXPIRED".into(), "expired"),
        (DecisionKind::Approve, ApprovalState::ApprovedWithEdits) => {
            ("APPROVED WITH EDITS".into(), "approved")
        }
        (DecisionKind::Approve, ApprovalState::Pending) => {
            ("APPROVED (quorum incomplete)".into(), "approved")
        }
        (DecisionKind::Approve, _) => ("APPROVED".into(), "approved"),
        (DecisionKind::Deny, _) => ("DENIED".into(), "denied"),
        // Reminders and escalations are timer records without a kind.
        (DecisionKind::Unspecified, _) => ("NOTICE".into(), "info"),
    }
}

fn effect_token(effect: &str) -> &'static str {
    match effect {
        "money" => "money",
        "write_external" => "write_external",
        "write_own" => "write_own",
        _ => "read",
    }
}

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// "expires in 54 min", or "expired 2 min ago" while the run closes it.
pub(crate) fn expiry_text(seconds_left: Option<i64>) -> String {
    match seconds_left {
        None => "no expiry".into(),
        Some(s) if s >= 0 => format!("expires in {}", span_text(s)),
        Some(s) => format!("expired {} ago", span_text(-s)),
    }
}

/// "just now", "5 min ago", "2 h 3 min ago".
pub(crate) fn ago_text(seconds: i64) -> String {
    if seconds < 5 {
        "just now".into()
    } else {
        format!("{} ago", span_text(seconds))
    }
}

/// A duration in words, to the minute past the first minute.
pub(crate) fn span_text(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min", s / 60)
    } else if s < 48 * 3600 {
        let (h, m) = (s / 3600, (s % 3600) / 60);
        if m == 0 {
            format!("{h} h")
        } else {
            format!("{h} h {m} min")
        }
    } else {
        let (d, h) = (s / 86_400, (s % 86_400) / 3600);
        if h == 0 {
            format!("{d} d")
        } else {
            format!("{d} d {h} h")
        }
    }
}

/// `2026-11-24 14:44:43 UTC` from Unix seconds.
pub(crate) fn utc_text(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviewers_decisions_say_who_signed_them() {
        let mut record = DecisionRecord {
            reviewer: "bob@example.com".into(),
            channel: "signal".into(),
            ..Default::default()
        };
        assert!(signature_cell(&record).contains(">unsigned<"));
        record.signed_by = "serve-1<b>".into();
        let cell = signature_cell(&record);
        assert!(cell.contains("signed by serve-1&lt;b&gt;"), "{cell}");
        record.channel = "timer".into();
        assert_eq!(signature_cell(&record), "");
    }
}
