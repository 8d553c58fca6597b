//! Enrollment tokens: list, create for a group (optional expiry, number of uses, plain-HTTP
//! enrollment), and revoke. Only the token's SHA-256 is stored; the token is shown once.

use ward_api::fleet::{NewToken, RevokedToken, Token};
use ward_fleet::Tree;
use ward_proto::duration::parse as parse_duration;
use ward_proto::now_ms;
use ward_store::{Change, Mutation, Store, TokenRecord};

use super::{read, render, write};
use crate::api::ApiError;
use crate::auth::{self, Caller};
use crate::ops::{audit, referenced_group, tree_of};
use crate::state::App;

/// A new token's lifetime unless the request says: a week, long enough to roll an agent out
/// to a site, short enough that a token in an old script or mail stops working by itself.
pub const DEFAULT_LIFETIME: &str = "7d";
/// A new token's enrollments unless the request says: a site's rollout, not an open door.
pub const DEFAULT_USES: i64 = 1000;

/// The most enrollments a token may allow (0 allows any number).
const MAX_USES: i64 = 1_000_000_000;

/// The shortest lifetime a new token may have: one that expires before anyone can use it is
/// a mistake.
const MIN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Every token (without its secret).
pub async fn list(app: &App) -> Result<Vec<Token>, ApiError> {
    read(app, |ctx| {
        let tree = tree_of(ctx.store())?;
        Ok(ctx
            .store()
            .tokens()?
            .iter()
            .map(|t| render::token(&tree, t))
            .collect())
    })
    .await
}

/// `POST /tokens`: the token, shown this once.
pub async fn create(app: &App, caller: &Caller, request: NewToken) -> Result<Token, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        let store = ctx.store();
        let tree = tree_of(store)?;
        let allow_http = request.allow_http.unwrap_or(false);
        let group = referenced_group(&tree, "group", &request.group)?;
        let expires = request
            .expires
            .unwrap_or_else(|| DEFAULT_LIFETIME.to_string());
        let expires_ms = match Some(expires).filter(|text| text != "never") {
            Some(text) => {
                let duration = parse_duration(&text)
                    .map_err(|e| ApiError::bad_request(format!("expires: {e}")))?;
                if duration < MIN_LIFETIME {
                    return Err(ApiError::bad_request(format!(
                        "expires: {text} is shorter than a minute: the token would expire \
                             before an agent could use it (or 'never')"
                    )));
                }
                let millis = i64::try_from(duration.as_millis()).ok();
                Some(
                    millis
                        .and_then(|m| now_ms().checked_add(m))
                        .ok_or_else(|| ApiError::bad_request("expires: too far away"))?,
                )
            }
            None => None,
        };
        let uses_left = match request.uses.unwrap_or(DEFAULT_USES) {
            0 => None,
            uses if !(0..=MAX_USES).contains(&uses) => {
                return Err(ApiError::bad_request(format!(
                    "uses: a number from 1 to {MAX_USES}, or 0 for any number"
                )))
            }
            uses => Some(uses),
        };
        let (token, hash) = auth::new_token();
        let record = TokenRecord {
            id: 0,
            group,
            token_sha256: hash,
            created_ms: now_ms(),
            expires_ms,
            uses_left,
            revoked: false,
            allow_http,
            accept_cut_off: request.accept_cut_off.unwrap_or(false),
        };
        let warnings = enrollment_warnings(store, &tree, group, &record)?;
        let applied = store.apply(&Change {
            tree_version: None,
            mutation: Mutation::CreateToken(record.clone()),
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(
                &caller,
                "token.create",
                tree.path(group).unwrap_or_default(),
                None,
                Some(serde_json::json!({
                    "expires_ms": expires_ms,
                    "uses": uses_left,
                    "allow_http": record.allow_http,
                    "accept_cut_off": record.accept_cut_off,
                })),
            ),
        })?;
        let mut answer = render::token(
            &tree,
            &TokenRecord {
                id: applied.new_id.unwrap_or_default(),
                ..record
            },
        );
        answer.token = Some(token);
        answer.warnings = warnings;
        Ok(answer)
    })
    .await
}

/// What an admin should know before handing the token out: an agent that enrolls over
/// plain HTTP into a group whose server list has no HTTP entry needs a TLS stack the clients
/// listener serves, or its first check-in fails.
fn enrollment_warnings(
    store: &dyn Store,
    tree: &Tree,
    group: ward_fleet::GroupId,
    token: &TokenRecord,
) -> Result<Vec<String>, ApiError> {
    let mut warnings = Vec::new();
    let Some(effective) = tree.effective(group) else {
        return Ok(warnings);
    };
    let lists = store.server_lists()?;
    let has_http = lists
        .iter()
        .find(|l| l.name == effective.server_list)
        .is_some_and(|l| {
            l.levels
                .iter()
                .flatten()
                .any(|e| e.protocol == ward_fleet::Protocol::Http)
        });
    if token.allow_http && !has_http {
        let path = tree.path(group).unwrap_or_default();
        warnings.push(format!(
            "agents may enroll over plain HTTP, but '{path}' gets server list '{}', which has \
             no HTTP entry: an agent whose TLS stack the clients listener does not serve \
             (an XP machine without 3DES, say) {}",
            effective.server_list,
            if token.accept_cut_off {
                "enrolls, cannot check in with that list, and goes back to the server it \
                 enrolled through (shown as reverted)"
            } else {
                "is refused at enrollment, with the reason (its own ClientHello says so); \
                 enroll those into a group with an HTTP server list"
            }
        ));
    }
    Ok(warnings)
}

/// `POST /tokens/{id}/revoke`.
pub async fn revoke(app: &App, caller: &Caller, id: String) -> Result<RevokedToken, ApiError> {
    let caller = caller.clone();
    write(app, move |ctx| {
        let id: i64 = id
            .parse()
            .map_err(|_| ApiError::not_found(format!("no token {id}")))?;
        ctx.store().apply(&Change {
            tree_version: None,
            mutation: Mutation::RevokeToken(id),
            bump_groups: vec![],
            bump_agents: vec![],
            audit: audit(&caller, "token.revoke", id.to_string(), None, None),
        })?;
        Ok(RevokedToken { revoked: id })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operations::assert_refused;

    #[test]
    fn bad_token_bodies_name_their_field() {
        assert_refused::<NewToken>(&[
            ("{}", "missing field `group`"),
            (r#"{"group":"G","uses":"3"}"#, "uses: invalid type: string"),
            (
                r#"{"group":"G","uses":1.5}"#,
                "uses: invalid type: floating point",
            ),
            (
                r#"{"group":"G","expires":7}"#,
                "expires: invalid type: integer",
            ),
            (
                r#"{"group":"G","allow_http":"yes"}"#,
                "allow_http: invalid type: string",
            ),
            (r#"{"group":"G","max_uses":3}"#, "unknown field `max_uses`"),
        ]);
    }
}
