//! TLS rotations: the CA agents trust and the key their check-ins are signed under, each with
//! its state and who has acknowledged the rotation under way (and who has not, and why).
//! Rotate, switch and abort go through the same guarded operations as `ward server ca` and
//! `ward server key`: a switch or abort that would cut agents off is refused with their names.

use hyper::StatusCode;
use maud::{html, Markup};
use ward_api::server::{Acknowledgement, CaDescription, GuardedRequest};
use ward_server::api::{ApiError, HttpResponse};
use ward_server::operations::{agreement, ca};
use ward_server::state::App;

use crate::layout::{self, View};
use crate::respond::{self, Form};

const TITLE: &str = "Rotations";

fn description(title: &str, ca: &Option<CaDescription>) -> Markup {
    html! {
        @if let Some(ca) = ca {
            tr {
                th scope="row" { (title) }
                td { (ca.subject.as_deref().unwrap_or("")) }
                td { code { (ca.fingerprint.as_deref().map(|f| &f[..f.len().min(16)]).unwrap_or("")) } }
                td { (layout::time(Some(&ca.not_after))) }
                td.num { (ca.days_left.map(|d| d.to_string()).unwrap_or_default()) }
            }
        }
    }
}

fn acknowledgement(id: &str, ack: &Option<Acknowledgement>) -> Markup {
    html! {
        @if let Some(ack) = ack {
            p id=(format!("{id}-ack")) {
                "Acknowledged by " strong { (ack.acknowledged) } " of " (ack.agents) " agents; "
                (ack.waiting) " still to check in"
                @if ack.simulated_ignored > 0 { " (" (ack.simulated_ignored) " simulated agents not counted)" } "."
            }
            @if !ack.not_acknowledged.is_empty() {
                table id=(format!("{id}-waiting")) {
                    caption { "Not acknowledged yet" }
                    thead { tr { th scope="col" { "Agent" } th scope="col" { "Group" } th scope="col" { "Last check-in" } th scope="col" { "Channel" } } }
                    tbody {
                        @for agent in &ack.not_acknowledged {
                            tr {
                                td { a href=(format!("/agents/{}", respond::encode(&agent.id))) { code { (agent.id) } } }
                                td { (agent.group.as_deref().unwrap_or("")) }
                                td { (layout::time(agent.last_checkin.as_deref())) }
                                td { (agent.channel.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn step_form(view: &View, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action="/tls/rotations" {
            (view.csrf_field())
            input type="hidden" name="action" value=(action);
            button type="submit" id=(action) { (label) }
        }
    }
}

/// `GET /tls/rotations` (and the page again after a step, with its outcome).
pub async fn page(
    app: &App,
    view: &View,
    outcome: Option<Result<String, ApiError>>,
) -> HttpResponse {
    let ca = ca::status(app).await;
    let key = agreement::status(app).await;
    let status = match &outcome {
        Some(Err(error)) => error.status,
        _ => StatusCode::OK,
    };
    let may = view.may_change();
    let body = html! {
        @match &outcome {
            Some(Ok(done)) => p.notice role="status" #rotation-done { (done) },
            Some(Err(error)) => (super::guard_refusal(error, "Agents the step would cut off, and why")),
            None => {}
        }
        section aria-labelledby="ca-heading" {
            h2 #ca-heading { "The CA agents trust" }
            @match &ca {
                Ok(ca) => {
                    table #ca {
                        thead { tr { th scope="col" { "" } th scope="col" { "Subject" } th scope="col" { "Fingerprint" } th scope="col" { "Valid until" } th.num scope="col" { "Days left" } } }
                        tbody {
                            (description("current", &ca.current))
                            (description("next", &ca.next))
                            (description("previous", &ca.previous))
                        }
                    }
                    p #ca-state { @if ca.under_way { strong { "A rotation is under way." } " Agents are told both CAs until the switch." } @else { "No rotation under way." } }
                    (acknowledgement("ca", &ca.acknowledgement))
                    @if may {
                        @if ca.under_way {
                            (step_form(view, "ca-switch", "Switch the listeners to the new CA"))
                            (step_form(view, "ca-abort", "Abort the rotation"))
                        } @else {
                            (step_form(view, "ca-rotate", "Start a CA rotation"))
                        }
                    }
                }
                Err(error) => (layout::refusal(error.code, &error.message)),
            }
        }
        section aria-labelledby="key-heading" {
            h2 #key-heading { "The key check-ins are signed under" }
            @match &key {
                Ok(key) => {
                    dl.facts #key {
                        dt { "Current" } dd { code { (key.current) } }
                        @if let Some(next) = &key.next { dt { "Next" } dd { code { (next) } } }
                        @if let Some(withdrawn) = &key.withdrawn { dt { "Withdrawn" } dd { code { (withdrawn) } } }
                    }
                    p #key-state { @if key.under_way { strong { "A rotation is under way." } } @else { "No rotation under way." } }
                    (acknowledgement("key", &key.acknowledgement))
                    @if may {
                        @if key.under_way {
                            (step_form(view, "key-switch", "Switch to the new key"))
                            (step_form(view, "key-abort", "Abort the rotation"))
                        } @else {
                            (step_form(view, "key-rotate", "Start a key rotation"))
                        }
                    }
                }
                Err(error) => (layout::refusal(error.code, &error.message)),
            }
        }
    };
    respond::page(status, layout::shell(Some(view), TITLE, body))
}

/// `POST /tls/rotations`: one step, by the form's `action`.
pub async fn step(app: &App, view: &View, form: &Form) -> HttpResponse {
    let caller = &view.caller;
    let guarded = GuardedRequest::default();
    let outcome = match form.get("action") {
        Some("ca-rotate") => ca::rotate(app, caller).await.map(|s| {
            format!(
                "CA rotation started: {} agents get both CAs.",
                s.agents_bumped.unwrap_or(0)
            )
        }),
        Some("ca-switch") => ca::switch(app, caller, guarded)
            .await
            .map(|_| "The listeners now serve a certificate of the new CA.".to_string()),
        Some("ca-abort") => ca::abort(app, caller, guarded)
            .await
            .map(|_| "The CA rotation was aborted.".to_string()),
        Some("key-rotate") => agreement::rotate(app, caller).await.map(|s| {
            format!(
                "Key rotation started: {} agents get the new key.",
                s.agents_bumped.unwrap_or(0)
            )
        }),
        Some("key-switch") => agreement::switch(app, caller, guarded)
            .await
            .map(|_| "Check-ins are now signed under the new key.".to_string()),
        Some("key-abort") => agreement::abort(app, caller, guarded)
            .await
            .map(|_| "The key rotation was aborted.".to_string()),
        _ => Err(ApiError::bad_request("action: no such rotation step")),
    };
    page(app, view, Some(outcome)).await
}
