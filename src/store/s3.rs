//! `kind = "s3"`: an S3-compatible object store. Credentials come only from `targets.toml`:
//! no `~/.aws` files, no environment, no instance metadata, so a backup never runs under
//! credentials nobody configured for it.

use super::{
    Policy, Store, StoreError, StoreErrorKind, StoreResult,
    azblob::secret_error,
    opendal_store::OpendalStore,
    s3_lock::{AsOf, Bucket, ObjectLocked},
};
use crate::{config::TargetKind, secret::Vaults};

pub(super) fn open(
    kind: &TargetKind,
    policy: Policy,
    vaults: &dyn Vaults,
    as_of: Option<jiff::Timestamp>,
) -> StoreResult<Box<dyn Store>> {
    let TargetKind::S3 {
        endpoint,
        bucket,
        region,
        path,
        access_key_id,
        secret_access_key,
        virtual_host_style,
        object_lock,
    } = kind
    else {
        unreachable!("s3::open is called for s3 targets")
    };
    let id = access_key_id
        .resolve("s3 access_key_id", vaults)
        .map_err(secret_error)?;
    let key = secret_access_key
        .resolve("s3 secret_access_key", vaults)
        .map_err(secret_error)?;
    let mut builder = opendal::services::S3::default()
        .endpoint(endpoint)
        .bucket(bucket)
        .region(region)
        .root(&format!("/{path}"))
        .access_key_id(id.expose())
        .secret_access_key(key.expose())
        .disable_config_load()
        .disable_ec2_metadata();
    if *virtual_host_style {
        builder = builder.enable_virtual_host_style();
    }
    if object_lock.is_some() {
        // A bucket with a default retention takes no upload without a checksum.
        builder = builder.checksum_algorithm("md5");
    }
    let location = format!("s3:{}/{bucket}/{path}", endpoint.trim_end_matches('/'));
    let versions = || {
        Bucket::new(
            endpoint,
            bucket,
            region,
            path,
            *virtual_host_style,
            (id.expose(), key.expose()),
            policy.timeout,
        )
    };
    if let Some(at) = as_of {
        if object_lock.is_none() {
            return Err(StoreError::new(
                StoreErrorKind::Permanent,
                format!(
                    "{location}: `--as-of` reads only a bucket that keeps versions (an s3 target \
                     with `object_lock`)"
                ),
            ));
        }
        return Ok(Box::new(AsOf::new(versions(), at, location)?));
    }
    let store = OpendalStore::new(
        builder,
        policy,
        location,
        vec![key.expose().to_string()],
        false,
    )?;
    let Some(lock) = object_lock else {
        return Ok(Box::new(store));
    };
    Ok(Box::new(ObjectLocked::new(
        Box::new(store),
        versions(),
        *lock,
    )))
}
