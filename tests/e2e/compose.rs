//! The docker compose stack (docker-compose.yml, Dockerfile, deploy/) checked
//! against the code, without a Docker engine or a Temporal server:
//!
//! - every service has an image (pinned) or a build, long-running services a
//!   health check and a restart policy, one-shot jobs no restart loop;
//!   `depends_on` names services that exist, waits on health or completion,
//!   and has no cycle; bind-mounted files exist; host ports do not collide;
//! - the setup job registers exactly `SEARCH_ATTRIBUTES`, the list the code
//!   registers, with the script that does it;
//! - `worker`, `serve` and `countersign …` health checks are real command
//!   lines of the `countersign` CLI; the worker and serve point at the
//!   stack's Temporal and the namespace the setup job prepares;
//! - the Dockerfile's runtime stage runs as a non-root user;
//! - the server config serve mounts loads with the server's config loader;
//! - the worker's agents folder (`--agents`, through its mounts) loads as a
//!   worker loads it;
//! - the Temporal server's dynamic config carries `DYNAMIC_CONFIG`.
//!
//! `docker compose config -q` also runs when `docker compose` is available.
//! `every_check_can_fail` breaks each of these once and expects a complaint.

use anyhow::{Context, Result};
use clap::Parser;
use countersign_proto::contract::SEARCH_ATTRIBUTES;
use serde_norway::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// The service that registers the search attributes.
const SETUP_SERVICE: &str = "countersign-setup";

/// What the checks read: the parsed compose file, the Dockerfile, and the
/// files they mount (from disk, unless a test replaced one).
struct Stack {
    root: PathBuf,
    compose: Value,
    dockerfile: String,
    /// Replacement contents, by path relative to the repository root.
    overrides: BTreeMap<PathBuf, String>,
}

impl Stack {
    fn load() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()?;
        let text = std::fs::read_to_string(root.join("docker-compose.yml"))?;
        let compose =
            serde_norway::from_str(&text).context("docker-compose.yml is not valid YAML")?;
        let dockerfile = std::fs::read_to_string(root.join("Dockerfile"))?;
        Ok(Stack {
            root,
            compose,
            dockerfile,
            overrides: BTreeMap::new(),
        })
    }

    fn read(&self, relative: &Path) -> Result<String> {
        if let Some(text) = self.overrides.get(relative) {
            return Ok(text.clone());
        }
        std::fs::read_to_string(self.root.join(relative))
            .with_context(|| format!("cannot read {}", relative.display()))
    }

    fn services(&self) -> Vec<(String, &Value)> {
        self.compose
            .get("services")
            .and_then(Value::as_mapping)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn service(&self, name: &str) -> Option<&Value> {
        self.compose.get("services")?.get(name)
    }

    fn service_mut(&mut self, name: &str) -> &mut Mapping {
        self.compose["services"]
            .get_mut(name)
            .and_then(Value::as_mapping_mut)
            .unwrap_or_else(|| panic!("no service {name}"))
    }
}

/// A string list: a YAML sequence, or a string split on whitespace.
fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => serde_norway::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            })
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// A service's environment as name → value (map or `NAME=value` list form).
fn environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => serde_norway::to_string(other).ok()?.trim().to_string(),
                };
                Some((k.as_str()?.to_string(), value))
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| match s.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (s.to_string(), String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `depends_on` as (service, condition); the list form has no condition.
fn dependencies(service: &Value) -> Vec<(String, Option<String>)> {
    match service.get("depends_on") {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| (s.to_string(), None))
            .collect(),
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| {
                let condition = v.get("condition").and_then(Value::as_str);
                Some((k.as_str()?.to_string(), condition.map(str::to_string)))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Bind mounts as (host path relative to the root, container path); named
/// volumes are left out.
fn bind_mounts(service: &Value) -> Vec<(PathBuf, PathBuf)> {
    let mut mounts = Vec::new();
    for volume in service
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let (source, target) = match volume {
            Value::String(s) => {
                let mut parts = s.split(':');
                match (parts.next(), parts.next()) {
                    (Some(source), Some(target)) => (source.to_string(), target.to_string()),
                    _ => continue,
                }
            }
            Value::Mapping(_) => match (
                volume.get("source").and_then(Value::as_str),
                volume.get("target").and_then(Value::as_str),
            ) {
                (Some(source), Some(target)) => (source.to_string(), target.to_string()),
                _ => continue,
            },
            _ => continue,
        };
        if source.starts_with('.') || source.starts_with('/') {
            mounts.push((normalize(Path::new(&source)), PathBuf::from(target)));
        }
    }
    mounts
}

/// `./a/../b` → `b`, relative to the repository root.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The host path (relative to the root) behind `container_path` in `service`,
/// through the bind mount with the longest matching target.
fn host_path(service: &Value, container_path: &Path) -> Option<PathBuf> {
    bind_mounts(service)
        .into_iter()
        .filter_map(|(source, target)| {
            let rest = container_path.strip_prefix(&target).ok()?;
            let path = if rest.as_os_str().is_empty() {
                source
            } else {
                source.join(rest)
            };
            Some((target.components().count(), path))
        })
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, path)| path)
}

/// The value after `flag` in a command line.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn healthcheck(service: &Value) -> Vec<String> {
    let Some(check) = service.get("healthcheck") else {
        return Vec::new();
    };
    if check.get("disable").and_then(Value::as_bool) == Some(true) {
        return Vec::new();
    }
    let test = words(check.get("test"));
    if test.first().map(String::as_str) == Some("NONE") {
        return Vec::new();
    }
    test
}

/// Whether `args` (without the program name) is a command line the real CLI accepts.
fn cli_accepts(args: &[String]) -> Result<(), String> {
    countersign::cli::Cli::try_parse_from(
        std::iter::once("countersign".to_string()).chain(args.iter().cloned()),
    )
    .map(|_| ())
    .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())
}

/// The Dockerfile's stages: instructions (keyword upper-cased, continuation
/// lines joined), split at each FROM.
fn dockerfile_stages(text: &str) -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let instruction = std::mem::take(&mut pending);
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((instruction.as_str(), ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push((keyword, rest.trim().to_string()));
        }
    }
    stages
}

/// Everything wrong with the stack, one line each.
fn problems(stack: &Stack) -> Vec<String> {
    let mut problems = Vec::new();
    let services = stack.services();
    if services.is_empty() {
        problems.push("docker-compose.yml has no services".to_string());
    }
    let names: BTreeSet<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    // One-shot jobs: what others wait on to complete.
    let one_shot: BTreeSet<String> = services
        .iter()
        .flat_map(|(_, s)| dependencies(s))
        .filter(|(_, c)| c.as_deref() == Some("service_completed_successfully"))
        .map(|(n, _)| n)
        .collect();
    let mut host_ports = BTreeMap::new();

    for (name, service) in &services {
        let image = service.get("image").and_then(Value::as_str);
        let build = service.get("build");
        match (image, build) {
            (None, None) => problems.push(format!("{name}: neither image nor build")),
            (Some(image), None) => {
                let tag = image.rsplit('/').next().and_then(|s| s.split_once(':'));
                match tag {
                    None => problems.push(format!("{name}: image {image} has no version tag")),
                    Some((_, "latest")) => {
                        problems.push(format!("{name}: image {image} is not pinned"))
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        let restart = service.get("restart").and_then(Value::as_str);
        if one_shot.contains(name) {
            if !matches!(restart, None | Some("no")) {
                problems.push(format!(
                    "{name}: a one-shot job must not restart (restart: {restart:?})"
                ));
            }
        } else {
            if healthcheck(service).is_empty() {
                problems.push(format!(
                    "{name}: long-running service without a healthcheck"
                ));
            }
            let restarts = matches!(restart, Some("always" | "unless-stopped"))
                || restart.is_some_and(|r| r.starts_with("on-failure"));
            if !restarts {
                problems.push(format!(
                    "{name}: long-running service without a restart policy (restart: {restart:?})"
                ));
            }
        }
        for (target, condition) in dependencies(service) {
            if !names.contains(target.as_str()) {
                problems.push(format!("{name}: depends_on unknown service {target}"));
                continue;
            }
            let wanted = if one_shot.contains(&target) {
                "service_completed_successfully"
            } else {
                "service_healthy"
            };
            if condition.as_deref() != Some(wanted) {
                problems.push(format!(
                    "{name}: depends_on {target} should wait for condition {wanted}, not {condition:?}"
                ));
            }
        }
        for (source, _) in bind_mounts(service) {
            if !stack.overrides.contains_key(&source) && !stack.root.join(&source).exists() {
                problems.push(format!(
                    "{name}: mounts {}, which does not exist",
                    source.display()
                ));
            }
        }
        for port in words(service.get("ports")) {
            // [ip:]host:container
            let parts: Vec<&str> = port.split(':').collect();
            if parts.len() >= 2 {
                let host = parts[..parts.len() - 1].join(":");
                if let Some(other) = host_ports.insert(host.clone(), name.clone()) {
                    problems.push(format!("{name} and {other} both publish {host}"));
                }
            }
        }
    }
    if let Some(cycle) = dependency_cycle(&services) {
        problems.push(format!("depends_on has a cycle: {}", cycle.join(" → ")));
    }

    check_search_attributes(stack, &mut problems);
    check_countersign_services(stack, &names, &mut problems);
    check_dockerfile(stack, &mut problems);
    check_server_config(stack, &mut problems);
    check_worker_agents(stack, &mut problems);
    check_dynamic_config(stack, &mut problems);
    problems
}

fn dependency_cycle(services: &[(String, &Value)]) -> Option<Vec<String>> {
    let edges: BTreeMap<&str, Vec<String>> = services
        .iter()
        .map(|(n, s)| {
            (
                n.as_str(),
                dependencies(s).into_iter().map(|(d, _)| d).collect(),
            )
        })
        .collect();
    fn visit(
        node: &str,
        edges: &BTreeMap<&str, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|start| visit(start, &edges, &mut Vec::new(), &mut done))
}

fn check_search_attributes(stack: &Stack, problems: &mut Vec<String>) {
    let Some(setup) = stack.service(SETUP_SERVICE) else {
        problems.push(format!(
            "no {SETUP_SERVICE} service registers the search attributes"
        ));
        return;
    };
    let mut registered = Vec::new();
    for arg in words(setup.get("command")) {
        match arg.split_once('=') {
            Some((name, kind)) => registered.push((name.to_string(), kind.to_string())),
            None => problems.push(format!(
                "{SETUP_SERVICE}: argument `{arg}` is not NAME=TYPE"
            )),
        }
    }
    registered.sort();
    let mut expected: Vec<(String, String)> = SEARCH_ATTRIBUTES
        .iter()
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect();
    expected.sort();
    if registered != expected {
        problems.push(format!(
            "{SETUP_SERVICE} registers {registered:?}, the code registers {expected:?}"
        ));
    }
    // The entrypoint runs a mounted script that creates them.
    let script = words(setup.get("entrypoint"))
        .into_iter()
        .find(|w| w.ends_with(".sh"))
        .and_then(|w| host_path(setup, Path::new(&w)));
    match script.map(|p| stack.read(&p)) {
        Some(Ok(text)) if text.contains("search-attribute create") => {}
        Some(Ok(_)) => problems.push(format!(
            "{SETUP_SERVICE}: its script does not run `temporal operator search-attribute create`"
        )),
        Some(Err(e)) => problems.push(format!("{SETUP_SERVICE}: {e:#}")),
        None => problems.push(format!(
            "{SETUP_SERVICE}: the entrypoint runs no script mounted from the repository"
        )),
    }
}

fn check_countersign_services(stack: &Stack, names: &BTreeSet<&str>, problems: &mut Vec<String>) {
    let setup_namespace = stack
        .service(SETUP_SERVICE)
        .map(|s| environment(s).get("TEMPORAL_NAMESPACE").cloned());
    for role in ["worker", "serve"] {
        let Some(service) = stack.service(role) else {
            problems.push(format!("no {role} service"));
            continue;
        };
        if service.get("build").is_none() {
            problems.push(format!(
                "{role}: not built from this repository's Dockerfile"
            ));
        }
        let command = words(service.get("command"));
        if command.first().map(String::as_str) != Some(role) {
            problems.push(format!(
                "{role}: command {command:?} is not `countersign {role} …`"
            ));
        }
        if let Err(e) = cli_accepts(&command) {
            problems.push(format!("{role}: `countersign {}`: {e}", command.join(" ")));
        }
        let check = healthcheck(service);
        if let Some(i) = check.iter().position(|w| w == "countersign")
            && let Err(e) = cli_accepts(&check[i + 1..])
        {
            problems.push(format!("{role}: healthcheck `{}`: {e}", check.join(" ")));
        }
        let env = environment(service);
        match env.get("TEMPORAL_ADDRESS").and_then(|a| a.rsplit_once(':')) {
            Some((host, _)) if names.contains(host) => {}
            other => problems.push(format!(
                "{role}: TEMPORAL_ADDRESS {other:?} does not name a service of the stack"
            )),
        }
        if let Some(namespace) = &setup_namespace
            && env.get("TEMPORAL_NAMESPACE") != namespace.as_ref()
        {
            problems.push(format!(
                "{role}: TEMPORAL_NAMESPACE {:?} is not the namespace {SETUP_SERVICE} prepares ({namespace:?})",
                env.get("TEMPORAL_NAMESPACE")
            ));
        }
        if role == "serve" {
            let port = flag_value(&command, "--listen").and_then(|l| l.rsplit_once(':'));
            match port {
                Some((_, port)) if check.iter().any(|w| w.contains(&format!(":{port}/healthz"))) => {}
                _ => problems.push(format!(
                    "serve: the healthcheck {check:?} does not ask /healthz on the port serve listens on"
                )),
            }
        }
    }
}

fn check_dockerfile(stack: &Stack, problems: &mut Vec<String>) {
    let stages = dockerfile_stages(&stack.dockerfile);
    let Some(runtime) = stages.last() else {
        problems.push("Dockerfile: no FROM".to_string());
        return;
    };
    if stages.len() < 2 {
        problems.push("Dockerfile: not multi-stage (builder and runtime)".to_string());
    }
    let build = stages.iter().flatten().any(|(k, rest)| {
        k == "RUN" && rest.contains("cargo build --release -p countersign --locked")
    });
    if !build {
        problems.push("Dockerfile: no `cargo build --release -p countersign --locked`".to_string());
    }
    match runtime.iter().rev().find(|(k, _)| k == "USER") {
        None => problems
            .push("Dockerfile: the runtime stage sets no USER (it would run as root)".to_string()),
        Some((_, user)) => {
            let name = user.split(':').next().unwrap_or_default();
            if name.is_empty() || name == "root" || name == "0" {
                problems.push(format!("Dockerfile: the runtime stage runs as `{user}`"));
            }
        }
    }
    let entrypoint = runtime.iter().rev().find(|(k, _)| k == "ENTRYPOINT");
    if !entrypoint.is_some_and(|(_, e)| e.contains("countersign\"") || e.ends_with("countersign")) {
        problems.push(format!(
            "Dockerfile: the runtime ENTRYPOINT is {entrypoint:?}, not countersign"
        ));
    }
    // The MCP example runs the example server from PATH.
    if !stack.dockerfile.contains("countersign-example-mcp") {
        problems.push("Dockerfile: the image lacks countersign-example-mcp".to_string());
    }
}

fn check_server_config(stack: &Stack, problems: &mut Vec<String>) {
    let Some(serve) = stack.service("serve") else {
        return;
    };
    let command = words(serve.get("command"));
    let config = flag_value(&command, "--config")
        .map(str::to_string)
        .or_else(|| environment(serve).get("COUNTERSIGN_SERVER_CONFIG").cloned());
    let Some(config) = config else {
        problems.push("serve: no --config".to_string());
        return;
    };
    let config = PathBuf::from(config);
    let Some(host) = host_path(serve, &config) else {
        problems.push(format!(
            "serve: {} is not mounted from the repository",
            config.display()
        ));
        return;
    };
    let text = match stack.read(&host) {
        Ok(text) => text,
        Err(e) => return problems.push(format!("serve: {e:#}")),
    };
    // Parsed as serve will: at its container path, so relative paths resolve there.
    let parsed = match countersign_server::ServerConfig::from_toml(&text, &config) {
        Ok(parsed) => parsed,
        Err(e) => return problems.push(format!("serve config ({}): {e}", host.display())),
    };
    if parsed.reviewers.is_empty() {
        problems.push(format!(
            "{}: no [[reviewers]] (no one could sign in)",
            host.display()
        ));
    }
}

/// The worker serves an agents folder (`--agents` or `COUNTERSIGN_AGENTS`)
/// mounted from the repository, and it loads as a worker loads it, with the
/// worker's environment.
fn check_worker_agents(stack: &Stack, problems: &mut Vec<String>) {
    let Some(worker) = stack.service("worker") else {
        return;
    };
    let command = words(worker.get("command"));
    let env = environment(worker);
    let dir = flag_value(&command, "--agents")
        .map(str::to_string)
        .or_else(|| env.get("COUNTERSIGN_AGENTS").cloned());
    let Some(dir) = dir else {
        problems.push("worker: no --agents DIR (it would serve no agents)".to_string());
        return;
    };
    let dir = PathBuf::from(dir);
    let Some(host) = host_path(worker, &dir) else {
        problems.push(format!(
            "worker: --agents {} is not mounted from the repository",
            dir.display()
        ));
        return;
    };
    let lookup = |name: &str| env.get(name).cloned();
    match countersign_worker::AgentRegistry::load_with_env(&stack.root.join(&host), &lookup) {
        Ok(registry) if registry.is_empty() => problems.push(format!(
            "worker: --agents {} ({}) holds no agent file",
            dir.display(),
            host.display()
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!("worker: --agents {}: {e}", dir.display())),
    }
}

fn check_dynamic_config(stack: &Stack, problems: &mut Vec<String>) {
    let Some(temporal) = stack.service("temporal") else {
        problems.push("no temporal service".to_string());
        return;
    };
    let Some(path) = environment(temporal)
        .get("DYNAMIC_CONFIG_FILE_PATH")
        .cloned()
    else {
        problems.push("temporal: no DYNAMIC_CONFIG_FILE_PATH".to_string());
        return;
    };
    let Some(host) = host_path(temporal, Path::new(&path)) else {
        problems.push(format!(
            "temporal: {path} is not mounted from the repository"
        ));
        return;
    };
    let config: Value = match stack
        .read(&host)
        .and_then(|t| Ok(serde_norway::from_str(&t)?))
    {
        Ok(config) => config,
        Err(e) => return problems.push(format!("temporal dynamic config: {e:#}")),
    };
    for setting in countersign::devserver::DYNAMIC_CONFIG {
        let (key, value) = setting.split_once('=').expect("key=value");
        let found = config
            .get(key)
            .and_then(|v| v.get(0))
            .and_then(|v| v.get("value"))
            .map(|v| {
                serde_norway::to_string(v)
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            });
        if found.as_deref() != Some(value) {
            problems.push(format!(
                "{}: {key} is {found:?}, the dev server gets {value}",
                host.display()
            ));
        }
    }
}

#[test]
fn the_compose_stack_matches_the_code() -> Result<()> {
    let stack = Stack::load()?;
    let problems = problems(&stack);
    assert!(
        problems.is_empty(),
        "docker compose stack:\n  {}",
        problems.join("\n  ")
    );

    // With a compose plugin, Docker's own validation too (this project's
    // machines have the docker CLI without it).
    let available = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if available {
        let output = std::process::Command::new("docker")
            .args(["compose", "-f", "docker-compose.yml", "config", "-q"])
            .current_dir(&stack.root)
            .output()?;
        assert!(
            output.status.success(),
            "docker compose config -q: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    } else {
        eprintln!("docker compose is not available: skipped `docker compose config -q`");
    }
    Ok(())
}

/// Each check catches the breakage it exists for.
#[test]
fn every_check_can_fail() -> Result<()> {
    type Break = Box<dyn Fn(&mut Stack)>;
    let set = |service: &'static str, key: &'static str, value: Value| -> Break {
        Box::new(move |s: &mut Stack| {
            s.service_mut(service).insert(key.into(), value.clone());
        })
    };
    let remove = |service: &'static str, key: &'static str| -> Break {
        Box::new(move |s: &mut Stack| {
            s.service_mut(service).remove(key);
        })
    };
    let yaml = |text: &str| -> Value { serde_norway::from_str(text).unwrap() };
    let replace_in = |file: &'static str, from: &'static str, to: &'static str| -> Break {
        Box::new(move |s: &mut Stack| {
            let path = PathBuf::from(file);
            let text = s.read(&path).unwrap();
            assert!(text.contains(from), "{file} has no `{from}`");
            s.overrides.insert(path, text.replace(from, to));
        })
    };
    let dockerfile = |from: &'static str, to: &'static str| -> Break {
        Box::new(move |s: &mut Stack| {
            assert!(
                s.dockerfile.contains(from),
                "the Dockerfile has no `{from}`"
            );
            s.dockerfile = s.dockerfile.replace(from, to);
        })
    };
    let attributes: Vec<String> = SEARCH_ATTRIBUTES
        .iter()
        .map(|(n, k)| format!("{n}={k}"))
        .collect();
    let breaks: Vec<(&str, Break, &str)> = vec![
        (
            "no healthcheck",
            remove("serve", "healthcheck"),
            "serve: long-running service without a healthcheck",
        ),
        (
            "no restart",
            set("worker", "restart", "no".into()),
            "worker: long-running service without a restart policy",
        ),
        (
            "restarting job",
            set(SETUP_SERVICE, "restart", "unless-stopped".into()),
            "must not restart",
        ),
        (
            "no image",
            remove("postgresql", "image"),
            "postgresql: neither image nor build",
        ),
        (
            "unpinned",
            set("postgresql", "image", "postgres:latest".into()),
            "is not pinned",
        ),
        (
            "untagged",
            set("temporal-ui", "image", "temporalio/ui".into()),
            "has no version tag",
        ),
        (
            "unknown dependency",
            set(
                "serve",
                "depends_on",
                yaml("temporall: {condition: service_healthy}"),
            ),
            "depends_on unknown service temporall",
        ),
        (
            "unordered dependency",
            set("serve", "depends_on", yaml("[temporal]")),
            "should wait for condition service_healthy",
        ),
        (
            "cycle",
            set(
                "postgresql",
                "depends_on",
                yaml("serve: {condition: service_healthy}"),
            ),
            "depends_on has a cycle",
        ),
        (
            "missing mount",
            set(
                "temporal",
                "volumes",
                yaml(
                    "['./deploy/temporal/nope.yaml:/etc/temporal/config/dynamicconfig/countersign.yaml:ro']",
                ),
            ),
            "does not exist",
        ),
        (
            "same host port",
            set("temporal-ui", "ports", yaml("['127.0.0.1:8080:8080']")),
            "both publish 127.0.0.1:8080",
        ),
        (
            "attribute missing",
            set(
                SETUP_SERVICE,
                "command",
                Value::from(attributes[1..].to_vec()),
            ),
            "the code registers",
        ),
        (
            "attribute extra",
            set(
                SETUP_SERVICE,
                "command",
                Value::from([attributes.clone(), vec!["CountersignExtra=Keyword".into()]].concat()),
            ),
            "the code registers",
        ),
        (
            "attribute retyped",
            set(
                SETUP_SERVICE,
                "command",
                Value::from(
                    attributes
                        .iter()
                        .map(|a| a.replace("=KeywordList", "=Keyword"))
                        .collect::<Vec<_>>(),
                ),
            ),
            "the code registers",
        ),
        (
            "script lost",
            set(
                SETUP_SERVICE,
                "entrypoint",
                yaml("['/bin/sh', '-c', 'true']"),
            ),
            "runs no script",
        ),
        (
            "not a subcommand",
            set("worker", "command", yaml("['wurker']")),
            "worker: `countersign wurker`",
        ),
        (
            "bad flag",
            set(
                "serve",
                "command",
                yaml(
                    "['serve', '--listen', '0.0.0.0:8080', '--config', '/etc/countersign/server.toml', '--bogus']",
                ),
            ),
            "serve: `countersign serve",
        ),
        (
            "bad health command",
            set(
                "worker",
                "healthcheck",
                yaml("{test: ['CMD', 'countersign', 'run', 'lsit']}"),
            ),
            "worker: healthcheck",
        ),
        (
            "health on another port",
            set(
                "serve",
                "command",
                yaml(
                    "['serve', '--listen', '0.0.0.0:9090', '--config', '/etc/countersign/server.toml']",
                ),
            ),
            "does not ask /healthz on the port",
        ),
        (
            "no address",
            set(
                "worker",
                "environment",
                yaml(
                    "{TEMPORAL_ADDRESS: 'temporl:7233', TEMPORAL_NAMESPACE: '${TEMPORAL_NAMESPACE:-default}'}",
                ),
            ),
            "does not name a service",
        ),
        (
            "other namespace",
            set(
                "serve",
                "environment",
                yaml("{TEMPORAL_ADDRESS: 'temporal:7233', TEMPORAL_NAMESPACE: 'prod'}"),
            ),
            "is not the namespace",
        ),
        (
            "root user",
            dockerfile("USER 10001:10001", "USER root"),
            "runs as `root`",
        ),
        (
            "no user",
            dockerfile("USER 10001:10001", ""),
            "sets no USER",
        ),
        (
            "single stage",
            dockerfile("FROM debian", "# FROM debian"),
            "not multi-stage",
        ),
        (
            "bad config",
            replace_in(
                "deploy/countersign/server.toml",
                "token_sha256 = \"0000",
                "token_sha256 = \"zz00",
            ),
            "serve config",
        ),
        (
            "unknown config key",
            replace_in(
                "deploy/countersign/server.toml",
                "[runs]",
                "[runs]\nagents = 1",
            ),
            "serve config",
        ),
        (
            "no agents",
            set("worker", "command", yaml("['worker']")),
            "worker: no --agents DIR",
        ),
        (
            "worker cannot see agents",
            set(
                "worker",
                "volumes",
                yaml("['countersign-data:/var/lib/countersign']"),
            ),
            "is not mounted from the repository",
        ),
        (
            "agents folder with no agents",
            set(
                "worker",
                "command",
                yaml("['worker', '--agents', '/opt/countersign/examples/demo/invoices']"),
            ),
            "holds no agent file",
        ),
        (
            "dynamic config",
            replace_in(
                "deploy/temporal/dynamicconfig.yaml",
                "- value: 1000",
                "- value: 20",
            ),
            "the dev server gets 1000",
        ),
    ];
    for (what, breakage, expected) in breaks {
        let mut stack = Stack::load()?;
        breakage(&mut stack);
        let problems = problems(&stack);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{what}: expected a problem containing `{expected}`, got {problems:#?}"
        );
    }
    Ok(())
}
