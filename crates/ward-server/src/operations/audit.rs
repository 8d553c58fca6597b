//! The audit log: each applied change (who, what, when, the before and after), oldest first,
//! from `since` (a duration ago) up to `limit` entries.

use ward_api::fleet::{AuditEntry, AuditQuery};

use super::{read, render, MAX_LIMIT};
use crate::api::{since_ms, ApiError};
use crate::state::App;

pub async fn list(app: &App, query: AuditQuery) -> Result<Vec<AuditEntry>, ApiError> {
    read(app, move |ctx| {
        let since = match &query.since {
            Some(since) => since_ms(since)?,
            None => 0,
        };
        let limit = query.limit.unwrap_or(1000);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit: a number from 1 to {MAX_LIMIT}"
            )));
        }
        Ok(ctx
            .store()
            .audit(since, limit)?
            .iter()
            .map(render::audit)
            .collect())
    })
    .await
}
