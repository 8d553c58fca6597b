//! The audit log, newest first, with filters: how far back (the operation's), who and what
//! (this page's).

use hyper::StatusCode;
use maud::html;
use ward_api::fleet::AuditQuery;
use ward_server::api::HttpResponse;
use ward_server::operations::audit;
use ward_server::state::App;

use crate::layout::{self, View};
use crate::respond::{self, Form};

/// The most entries one page shows.
const LIMIT: usize = 500;

/// `GET /audit`.
pub async fn list(app: &App, view: &View, query: &Form) -> HttpResponse {
    let since = query.text("since");
    let actor = query.text("actor");
    let action = query.text("action");
    let listed = audit::list(
        app,
        AuditQuery {
            since: since.clone(),
            limit: Some(if actor.is_some() || action.is_some() {
                100_000
            } else {
                LIMIT
            }),
        },
    )
    .await;
    let (status, entries, error) = match listed {
        Ok(entries) => (StatusCode::OK, entries, None),
        Err(error) => (error.status, Vec::new(), Some(error)),
    };
    let shown: Vec<_> = entries
        .iter()
        .filter(|e| actor.as_ref().is_none_or(|a| e.actor.contains(a.as_str())))
        .filter(|e| {
            action
                .as_ref()
                .is_none_or(|a| e.action.contains(a.as_str()))
        })
        .take(LIMIT)
        .collect();
    let body = html! {
        form.filters method="get" action="/audit" role="search" aria-label="Filter the audit log" {
            label for="since" { "How far back (e.g. 1h, 7d)"
                input #since type="text" name="since" value=(since.as_deref().unwrap_or("")) aria-describedby="since-error";
                @if let Some(error) = &error { span.field-error #since-error role="alert" { (error.message) } }
            }
            label for="actor" { "Who" input #actor type="text" name="actor" value=(actor.as_deref().unwrap_or("")); }
            label for="action" { "What (e.g. group.create)" input #action type="text" name="action" value=(action.as_deref().unwrap_or("")); }
            button type="submit" { "Apply" }
        }
        table #audit {
            caption.muted { (shown.len()) " entries shown (at most " (LIMIT) ")" }
            thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "On" } th scope="col" { "Before" } th scope="col" { "After" } } }
            tbody {
                @for entry in &shown {
                    tr {
                        td { (layout::time(Some(&entry.at))) }
                        td { (entry.actor) }
                        td { code { (entry.action) } }
                        td { (entry.target) }
                        td { @if let Some(before) = &entry.before { code { (before) } } }
                        td { @if let Some(after) = &entry.after { code { (after) } } }
                    }
                }
            }
        }
    };
    respond::page(status, layout::shell(Some(view), "Audit log", body))
}
