//! The shipped example agents load as `run start` loads them, and their
//! scripts only call tools their files offer.

use anyhow::Result;
use countersign_policy::agent::ModelConfig;
use std::path::Path;

#[test]
fn every_example_agent_loads_and_calls_only_its_own_tools() -> Result<()> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(&examples)? {
        let path = entry?.path().join("agent.toml");
        if !path.exists() {
            continue;
        }
        let agent = countersign::cli::load_agent(&path)?;
        let offered: Vec<String> = countersign_worker::catalog::static_tools(&agent)
            .into_iter()
            .map(|t| t.name)
            .collect();
        let prefixes: Vec<String> = agent
            .mcp_servers
            .iter()
            .map(|s| format!("{}.", s.name))
            .chain(agent.openapi.iter().map(|a| format!("{}.", a.name)))
            .collect();
        if let Some(ModelConfig::Scripted { steps }) = &agent.model {
            for call in steps.iter().flat_map(|s| &s.calls) {
                assert!(
                    offered.contains(&call.tool)
                        || prefixes.iter().any(|p| call.tool.starts_with(p)),
                    "{}: the script calls `{}`, which the file does not offer ({offered:?})",
                    path.display(),
                    call.tool
                );
            }
        }
        let report = countersign::policy_check::report(&agent, None);
        for tool in &offered {
            assert!(report.contains(tool.as_str()), "{report}");
        }
        loaded.push(agent.name.clone());
    }
    loaded.sort();
    // `countersign dev` serves the whole folder as one registry.
    let registry = countersign_worker::AgentRegistry::load(&examples)?;
    let served: Vec<&str> = registry.agents().map(|(a, _)| a.name.as_str()).collect();
    for name in &loaded {
        assert!(served.contains(&name.as_str()), "{name} not in {served:?}");
    }
    assert!(
        served.contains(&"supplier-payer"),
        "the sub-agent is served too"
    );
    assert_eq!(
        loaded,
        [
            "accounts-payable",
            "accounts-payable-llm",
            "finance-lead",
            "note-keeper",
            "release-announcer",
            "search-admin",
            "ticket-clerk",
            "weekly-reporter"
        ]
    );
    Ok(())
}

#[test]
fn a_broken_openapi_document_is_reported_before_the_run_starts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("api.yaml"),
        "openapi: 3.0.0\npaths: [oops\n",
    )?;
    let agent = dir.path().join("agent.toml");
    std::fs::write(
        &agent,
        r#"
name = "broken"
[model]
provider = "scripted"
[[model.steps]]
say = "hi"
[[openapi]]
name = "api"
spec = "api.yaml"
"#,
    )?;
    let error = countersign::cli::load_agent(&agent)
        .unwrap_err()
        .to_string();
    assert!(error.contains("agent.toml"), "{error}");
    assert!(error.contains("openapi `api`"), "{error}");
    assert!(error.contains("line"), "{error}");
    Ok(())
}

#[test]
fn policy_check_explains_conditions_quorum_and_who_decides() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        r#"
name = "payer"
separation_of_duties = true
[groups]
finance = ["bob@example.com", "carol@example.com"]
[model]
provider = "scripted"
[[model.steps]]
say = "hi"
[[tools]]
name = "pay"
approvers = ["finance"]
quorum = 2
quorum_when = "amount > 1000"
builtin = { kind = "payment_request", url = "http://127.0.0.1:9/pay" }
[[tools]]
name = "note"
requires_approval = false
approval_when = "len(text) > 200"
builtin = { kind = "http_post", url = "http://127.0.0.1:9/note" }
"#,
    )?;
    let report = countersign::policy_check::report(&countersign::cli::load_agent(&path)?, None);
    for expected in [
        "pay (builtin, effect money): autonomous → approval, user_requested → approval",
        "2 distinct approvers when `amount > 1000` (otherwise 1)",
        "decided by groups finance (bob@example.com, carol@example.com), never the run's requester",
        "note (builtin, effect write_external): autonomous → runs, user_requested → runs",
        "also needs approval when `len(text) > 200`",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn policy_check_discover_shows_the_gate_of_every_discovered_operation() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/openapi/agent.toml");
    let agent = countersign::cli::load_agent(&path)?;
    let discovery =
        countersign_worker::catalog::discover(&reqwest::Client::new(), agent.file()).await;
    assert!(discovery.problems.is_empty(), "{:?}", discovery.problems);
    let without = countersign::policy_check::report(&agent, None);
    let with = countersign::policy_check::report(&agent, Some(&discovery.tools));
    assert!(without.contains("openapi `tickets`"), "{without}");
    for tool in &discovery.tools {
        assert!(!without.contains(&format!("{} (", tool.name)), "{without}");
        assert!(
            with.contains(&format!("{} (openapi tickets", tool.name)),
            "{with}"
        );
    }
    assert!(
        with.contains("autonomous → approval"),
        "a write operation is gated: {with}"
    );
    Ok(())
}

/// Runs the `countersign` binary with `args`, RUST_BACKTRACE=1 and no
/// $USER / $COUNTERSIGN_REQUESTER; returns (success, stderr).
fn countersign_cli(args: &[&str]) -> Result<(bool, String)> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("USER")
        .env_remove("COUNTERSIGN_REQUESTER")
        .env_remove("COUNTERSIGN_BACKTRACE")
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn user_errors_are_one_line_even_with_rust_backtrace_set() -> Result<()> {
    let (ok, stderr) = countersign_cli(&[
        "run",
        "start",
        "--agent",
        "/nonexistent/agent.toml",
        "--prompt",
        "hi",
    ])?;
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: /nonexistent/agent.toml: cannot read the agent file"),
        "{stderr}"
    );
    // Where the requester comes from, when nothing says.
    let (ok, stderr) = countersign_cli(&[
        "run",
        "start",
        "--agent",
        "accounts-payable",
        "--prompt",
        "hi",
    ])?;
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for part in ["--requester WHO", "COUNTERSIGN_REQUESTER", "$USER"] {
        assert!(stderr.contains(part), "{part} missing: {stderr}");
    }
    let (_, help) = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(["run", "start", "--help"])
            .output()?;
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(
        help.contains("$COUNTERSIGN_REQUESTER, else $USER"),
        "{help}"
    );
    Ok(())
}
