//! `kind = "azblob"`: Azure Blob Storage (or Azurite). A blob is written whole by one request,
//! so a reader never sees half of it.

use super::{Policy, Store, StoreResult, opendal_store::OpendalStore};
use crate::{config::TargetKind, secret::Vaults};

pub(super) fn open(
    kind: &TargetKind,
    policy: Policy,
    vaults: &dyn Vaults,
) -> StoreResult<Box<dyn Store>> {
    let TargetKind::Azblob {
        endpoint,
        account,
        container,
        path,
        key,
        sas,
    } = kind
    else {
        unreachable!("azblob::open is called for azblob targets")
    };
    let mut builder = opendal::services::Azblob::default()
        .endpoint(endpoint)
        .account_name(account)
        .container(container)
        .root(&format!("/{path}"));
    let mut secrets = Vec::new();
    if let Some(key) = key {
        let key = key.resolve("azblob key", vaults).map_err(secret_error)?;
        builder = builder.account_key(key.expose());
        secrets.push(key.expose().to_string());
    }
    if let Some(sas) = sas {
        let sas = sas.resolve("azblob sas", vaults).map_err(secret_error)?;
        builder = builder.sas_token(sas.expose());
        // A SAS travels in request URLs, which error messages may quote.
        secrets.push(sas.expose().trim_start_matches('?').to_string());
    }
    let location = format!(
        "azblob:{}/{container}/{path}",
        endpoint.trim_end_matches('/')
    );
    let store = OpendalStore::new(builder, policy, location, secrets, false)?;
    Ok(Box::new(store))
}

pub(super) fn secret_error(e: crate::error::Error) -> super::StoreError {
    super::StoreError::new(super::StoreErrorKind::Permanent, e.to_string())
}
