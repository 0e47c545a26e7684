//! Unit tests of the dashboard's pure parts: escaping, CSRF, the cross-site
//! check, flash messages, edited arguments and time texts. The routes are
//! tested end to end in `tests/e2e/dashboard.rs`.

use super::render::{self, Esc, Page, Recent};
use super::*;
use countersign_proto::{PendingApproval, ToolRef, json_to_struct};
use serde_json::json;

#[test]
fn escaping_covers_text_and_attributes() {
    assert_eq!(
        Esc(r#"<script>alert("x")</script> & 'y'"#).to_string(),
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
    );
    assert_eq!(Esc("plain ü text").to_string(), "plain ü text");
}

#[test]
fn approval_ids_are_percent_encoded_in_paths() {
    assert_eq!(render::path_segment("run-1~ab12"), "run-1~ab12");
    assert_eq!(
        render::path_segment("a/b c?\"<>~1"),
        "a%2Fb%20c%3F%22%3C%3E~1"
    );
}

#[test]
fn csrf_tokens_belong_to_their_session() {
    let token = csrf_token("secret-a");
    assert_eq!(token.len(), 64);
    assert!(csrf_matches("secret-a", &token));
    assert!(!csrf_matches("secret-b", &token));
    assert!(!csrf_matches("secret-a", ""));
    assert!(!csrf_matches("secret-a", "not hex"));
    assert!(!csrf_matches("secret-a", &token[..62]));
    // The token does not reveal the session token.
    assert!(!token.contains("secret"));
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn cross_site_requests_are_recognised() {
    let uri: Uri = "/ui/approvals/x~1/approve".parse().unwrap();
    // Non-browser clients send neither header.
    assert_eq!(
        cross_site(&headers(&[("host", "127.0.0.1:8080")]), &uri),
        None
    );
    assert_eq!(
        cross_site(
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
            ]),
            &uri
        ),
        None
    );
    assert_eq!(
        cross_site(
            &headers(&[
                ("host", "approve.example.com"),
                ("origin", "https://approve.example.com:443")
            ]),
            &uri
        ),
        None
    );
    for bad in [
        headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ]),
        headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
        headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9999"),
        ]),
        headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
        headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]),
        headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ]),
    ] {
        assert!(cross_site(&bad, &uri).is_some(), "{bad:?}");
    }
}

#[test]
fn flash_messages_survive_the_cookie() {
    let notice = Notice {
        kind: NoticeKind::Error,
        text: "Not approved: «stale»; x=1".into(),
    };
    let encoded = encode_flash(&notice);
    assert!(cookie_safe(&encoded));
    let decoded = decode_flash(&encoded).unwrap();
    assert_eq!(decoded.kind, NoticeKind::Error);
    assert_eq!(decoded.text, notice.text);
    assert!(decode_flash("zz").is_none());
    let long = Notice {
        kind: NoticeKind::Ok,
        text: "é".repeat(800),
    };
    assert!(decode_flash(&encode_flash(&long)).unwrap().text.len() <= 1000);
}

#[test]
fn cookie_safe_tokens() {
    assert!(cookie_safe("abc-DEF_123.~+/="));
    for bad in ["", "a b", "a;b", "a,b", "a\"b", "a\\b", "é"] {
        assert!(!cookie_safe(bad), "{bad}");
    }
}

#[test]
fn edited_arguments_are_edits_only_when_they_hash_differently() {
    let shown = json!({"to": "acme", "amount": 120, "currency": "EUR"});
    let sha = arguments_sha256(&shown);
    // Reformatted, reordered: not an edit.
    assert_eq!(
        edited_arguments(
            "{\n  \"currency\": \"EUR\", \"amount\": 120.0,\n \"to\": \"acme\"}",
            &sha
        )
        .unwrap(),
        None
    );
    assert_eq!(
        edited_arguments(r#"{"to": "acme", "amount": 99, "currency": "EUR"}"#, &sha).unwrap(),
        Some(json!({"to": "acme", "amount": 99, "currency": "EUR"}))
    );
    let invalid = edited_arguments(r#"{"to": "acme","#, &sha).unwrap_err();
    assert!(invalid.contains("not valid JSON"), "{invalid}");
    let not_object = edited_arguments("[1, 2]", &sha).unwrap_err();
    assert!(not_object.contains("JSON object"), "{not_object}");
}

#[test]
fn time_texts() {
    assert_eq!(render::expiry_text(Some(54 * 60 + 10)), "expires in 54 min");
    assert_eq!(render::expiry_text(Some(40)), "expires in 40 s");
    assert_eq!(
        render::expiry_text(Some(2 * 3600 + 5 * 60)),
        "expires in 2 h 5 min"
    );
    assert_eq!(
        render::expiry_text(Some(3 * 86_400 + 3600)),
        "expires in 3 d 1 h"
    );
    assert_eq!(render::expiry_text(Some(-130)), "expired 2 min ago");
    assert_eq!(render::expiry_text(None), "no expiry");
    assert_eq!(render::ago_text(2), "just now");
    assert_eq!(render::utc_text(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(render::utc_text(1_795_531_482), "2026-11-24 14:44:42 UTC");
    assert_eq!(render::utc_text(951_782_400), "2000-02-29 00:00:00 UTC");
}

fn approval(arguments: serde_json::Value) -> PendingApproval {
    let now = render::unix_seconds(SystemTime::now());
    let mut a = PendingApproval {
        approval_id: "run-1~ab12cd34".into(),
        workflow_id: "run-1".into(),
        agent: "payer".into(),
        requester: "alice@example.com".into(),
        tool: Some(ToolRef {
            kind: "builtin".into(),
            provider: String::new(),
            name: "pay".into(),
        }),
        arguments_sha256: arguments_sha256(&arguments),
        arguments: Some(json_to_struct(&arguments).unwrap()),
        effect_class: "money".into(),
        rule: "money: always needs approval".into(),
        required_approvals: 1,
        requested_at: Some(Default::default()),
        expires_at: Some(Default::default()),
        user_request: "pay <b>invoice</b> 7".into(),
        model_reason: "Paying \"invoice\" 7.".into(),
        state: ApprovalState::Pending as i32,
        ..Default::default()
    };
    // The timestamp type is pbjson's; set its fields rather than name it.
    if let Some(t) = a.requested_at.as_mut() {
        t.seconds = now - 60;
    }
    if let Some(t) = a.expires_at.as_mut() {
        t.seconds = now + 54 * 60 + 30;
    }
    a
}

fn reviewer(id: &str, groups: &[&str]) -> Reviewer {
    Reviewer {
        id: id.into(),
        token_sha256: crate::config::token_sha256(id),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        slack_user_id: None,
    }
}

/// The dashboard with `approvals` in its table (as summaries, the way the
/// inbox lists them) and the first one's card open (whole, as its run
/// answers).
fn page_html(reviewer: &Reviewer, approvals: Vec<PendingApproval>) -> String {
    render::dashboard_page(&Page {
        reviewer,
        csrf: "c5rf",
        now: SystemTime::now(),
        notices: Vec::new(),
        view: View::default(),
        opened: approvals.first().cloned().map(Ok),
        pending: Ok(PendingPage {
            approvals: approvals
                .iter()
                .map(countersign_proto::inbox::summary)
                .collect(),
            incomplete: vec![("run-9".into(), "no answer <in time>".into())],
            next_page_token: Some("tok/en+1".into()),
            ..Default::default()
        }),
        recent: Recent::default(),
        draft: None,
    })
}

#[test]
fn the_table_lists_summaries_and_each_row_opens_its_card() {
    let a = approval(json!({"to": "<acme>", "amount": 5, "currency": "EUR"}));
    let mut b = approval(json!({"to": "beta", "amount": 7, "currency": "EUR"}));
    b.approval_id = "run-2~ffff0000".into();
    b.parent_workflow_id = "caller-<1>".into();
    let html = page_html(&reviewer("bob@example.com", &[]), vec![a, b]);
    assert_eq!(
        html.matches("<tr class=\"effect-money\"").count(),
        2,
        "{html}"
    );
    assert!(
        html.contains("href=\"/?view=mine&amp;approval=run-2~ffff0000#opened\""),
        "{html}"
    );
    // The excerpt is the canonical JSON, escaped.
    assert!(html.contains("{&quot;amount&quot;:7,&quot;currency&quot;:&quot;EUR&quot;,&quot;to&quot;:&quot;beta&quot;}"), "{html}");
    assert!(html.contains("&lt;acme&gt;"));
    assert!(html.contains("for <code>caller-&lt;1&gt;</code>"));
    assert!(html.contains("0 of 1"));
    // "Waiting for me" is the default tab; the pager goes on with the token.
    assert!(html.contains("id=\"tab-mine\" class=\"current\""));
    assert!(
        html.contains("href=\"/?view=mine&amp;pageToken=tok%2Fen%2B1\" id=\"next-page\""),
        "{html}"
    );
    // Only the open card has the forms.
    assert_eq!(html.matches("<article class=\"card").count(), 1);
}

#[test]
fn model_provided_html_is_rendered_inert() {
    let evil = json!({
        "to": "</textarea><script>alert(1)</script>",
        "amount": 5,
        "currency": "EUR",
        "memo": "\"><img src=x onerror=alert(2)>"
    });
    let mut a = approval(evil.clone());
    a.tool.as_mut().unwrap().name = "<b>pay</b>".into();
    let html = page_html(&reviewer("bob@example.com", &[]), vec![a.clone()]);
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(!html.contains("</textarea><script>"), "{html}");
    assert!(!html.contains("<b>pay</b>"));
    assert!(!html.contains("<b>invoice</b>"));
    assert!(html.contains("&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("no answer &lt;in time&gt;"));
    // The only <script> in the page would be ours; there is none.
    assert!(!html.to_lowercase().contains("<script"));
    // The form carries the CSRF token and the hash of what it shows.
    assert!(html.contains("name=\"csrf\" value=\"c5rf\""));
    assert!(html.contains(&format!(
        "name=\"arguments_sha256\" value=\"{}\"",
        a.arguments_sha256
    )));
    assert!(html.contains("action=\"/ui/approvals/run-1~ab12cd34/approve\""));
    assert!(html.contains("expires in 54 min"), "{html}");
}

#[test]
fn reviewers_outside_the_groups_get_a_disabled_form() {
    // Who may decide is what the run resolved (`approvers`), not the
    // server config's groups.
    let mut a = approval(json!({"to": "acme", "amount": 5, "currency": "EUR"}));
    a.approver_groups = vec!["finance".into()];
    a.approvers = vec!["bob@example.com".into(), "alice@example.com".into()];
    let html = page_html(
        &reviewer("carol@example.com", &["finance"]),
        vec![a.clone()],
    );
    assert!(html.contains("<fieldset disabled"), "{html}");
    assert!(html.contains(
        "Only bob@example.com, alice@example.com may decide this call (approver groups: finance)."
    ));
    assert!(!html.contains("/approve\""));
    let html = page_html(&reviewer("bob@example.com", &[]), vec![a.clone()]);
    assert!(!html.contains("<fieldset disabled"));
    assert!(html.contains("/approve\""));

    a.separation_of_duties = true;
    let refusal = render::refusal(&reviewer("alice@example.com", &["finance"]), &a).unwrap();
    assert!(refusal.contains("separation of duties"), "{refusal}");
}

#[test]
fn sticky_approval_is_not_offered_for_money() {
    let a = approval(json!({"to": "acme", "amount": 5, "currency": "EUR"}));
    let html = page_html(&reviewer("bob@example.com", &[]), vec![a.clone()]);
    assert!(!html.contains("name=\"scope\""));
    let mut b = a;
    b.effect_class = "write_external".into();
    let html = page_html(&reviewer("bob@example.com", &[]), vec![b]);
    assert!(html.contains("name=\"scope\" value=\"run\""));
}
