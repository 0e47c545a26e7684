//! The payload store's configuration for every command: `--payload-store
//! URL` / `COUNTERSIGN_PAYLOAD_STORE` (a global option), opened once and
//! installed as the codec of the Temporal client the command uses, so the
//! worker, `serve` and the CLI all read and write references the same way.

use anyhow::{Context, Result};
use countersign_approvals::Approvals;
use countersign_payloads::PayloadStore;

/// Opens the store `url` names, if any.
pub fn open(url: Option<&str>) -> Result<Option<PayloadStore>> {
    url.filter(|u| !u.trim().is_empty())
        .map(|u| PayloadStore::from_url(u).context("--payload-store"))
        .transpose()
}

/// Makes `client` use `store` (if any) for large payloads.
pub fn install(client: &mut temporalio_client::Client, store: Option<&PayloadStore>) {
    if let Some(store) = store {
        countersign_payloads::install(client, store.clone());
    }
}

/// Connects the approvals client with the SDK's standard settings and the
/// payload store, if one is configured.
pub async fn connect_approvals(store: Option<&PayloadStore>) -> Result<Approvals> {
    let mut client = countersign_approvals::connect_from_env().await?;
    install(&mut client, store);
    let approvals = Approvals::new(client);
    Ok(match store {
        Some(store) => approvals.with_transcripts(store.transcripts()),
        None => approvals,
    })
}

/// `error`, with a hint to name the payload store when a client without one
/// met a payload it cannot read (a reference: the SDK says "Wrong encoding").
pub fn hint(error: anyhow::Error, has_store: bool) -> anyhow::Error {
    if !has_store && format!("{error:#}").contains("Wrong encoding") {
        error.context(
            "the run's data is in a payload store: give the workers' --payload-store URL (or COUNTERSIGN_PAYLOAD_STORE)",
        )
    } else {
        error
    }
}
