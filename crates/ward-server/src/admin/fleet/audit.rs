//! The audit log: each applied change (who, what, when, the before and after), oldest first,
//! from `?since=` (a duration ago) up to `?limit=` entries.

use serde_json::Value;
use ward_store::Store;

use super::ok;
use crate::admin::wire;
use crate::api::{query_pairs, since_ms, ApiError, ApiResult};

pub(super) fn audit_log(store: &dyn Store, query: &str) -> ApiResult {
    let mut since = 0;
    let mut limit = 1000;
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "since" => since = since_ms(&value)?,
            "limit" => limit = super::limit(&value)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{other}'"
                )))
            }
        }
    }
    ok(Value::Array(
        store
            .audit(since, limit)?
            .iter()
            .map(wire::audit_json)
            .collect(),
    ))
}
