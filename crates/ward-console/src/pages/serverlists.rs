//! Server lists: each list's servers by priority and the groups that use it, a new list, its
//! servers edited (guarded: a change that would cut agents off is refused with their names),
//! the seed's copy to plain HTTP (every server on the clients-http port, 8014 by default), and
//! deleting a list nobody uses. Each through `operations::serverlists`; a refusal is shown
//! next to the field it names.

use maud::{html, Markup};
use ward_api::fleet::{CopyList, NewServerList, Protocol, ServerListEdit};
use ward_server::api::{ApiError, HttpResponse};
use ward_server::operations::serverlists;
use ward_server::state::App;

use crate::layout::{self, View};
use crate::respond::{self, Form};

const TITLE: &str = "Server lists";

/// The fields a refusal is shown next to, in the order they are looked for (any other refusal
/// goes above the forms).
const FIELDS: [&str; 3] = ["servers", "name", "port"];

/// The entries typed in the new-list form: one per line (`1:https://mgr1:443`), blank lines
/// left out.
pub fn entries(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// `GET /serverlists` (and the page again after a change, with its outcome and the form).
pub async fn page(
    app: &App,
    view: &View,
    outcome: Option<(&Form, Result<String, ApiError>)>,
) -> HttpResponse {
    let lists = match serverlists::list(app).await {
        Ok(lists) => lists,
        Err(error) => return super::refused(view, TITLE, &error),
    };
    let super::Shown {
        form,
        result,
        status,
        field,
    } = super::shown(&outcome, &FIELDS);
    // What the form that was sent said, shown again in that form only.
    let sent_by = |form_action: &str, name: &str| -> String {
        form.filter(|f| f.get("action") == Some(form_action))
            .and_then(|f| f.get(name))
            .unwrap_or("")
            .to_string()
    };
    let error_for = |form_action: &str, name: &str| -> Markup {
        html! {
            @if let (Some(Err(error)), Some(field)) = (result, field) {
                @if field == name && form.and_then(|f| f.get("action")) == Some(form_action) {
                    span.field-error id=(format!("{form_action}-{name}-error")) role="alert" { (error.message) }
                }
            }
        }
    };
    let body = html! {
        @match result {
            Some(Ok(done)) => p.notice role="status" #list-done { (done) },
            Some(Err(error)) if field.is_none() || !sent_by("edit", "list").is_empty() => (super::guard_refusal(error, "Agents the change would cut off, and why")),
            _ => {}
        }
        @for list in &lists {
            table.serverlist id=(format!("list-{}", list.name.replace(' ', "-"))) {
                caption {
                    strong { (list.name) } " — used by "
                    @if list.used_by.is_empty() { "no group" } @else { (list.used_by.join(", ")) }
                }
                thead { tr { th.num scope="col" { "Priority" } th scope="col" { "Server" } th scope="col" { "Protocol" } th.num scope="col" { "Port" } th scope="col" { "Certificate checked" } } }
                tbody {
                    @for server in &list.servers {
                        tr {
                            td.num { (server.priority) }
                            td { code { (server.url) } }
                            td { (format!("{:?}", server.protocol).to_lowercase()) }
                            td.num { (server.port) }
                            td { @if server.verify_certificate { "yes" } @else { "no" } }
                        }
                    }
                }
            }
            @if view.may_change() {
                @let slug = list.name.replace(' ', "-");
                @let current = list.servers.iter().map(|s| format!("{}:{}", s.priority, s.url)).collect::<Vec<_>>().join("\n");
                details.edit-list open[sent_by("edit", "list") == list.name] {
                    summary { "Edit the servers of " (list.name) }
                    form.stacked method="post" action="/serverlists" id=(format!("edit-{slug}")) {
                        (view.csrf_field())
                        input type="hidden" name="action" value="edit";
                        input type="hidden" name="list" value=(list.name);
                        label for=(format!("servers-{slug}")) { "Servers, one per line (priority:URL)"
                            textarea id=(format!("servers-{slug}")) name="servers" rows="3" required {
                                @if sent_by("edit", "list") == list.name { (sent_by("edit", "servers")) } @else { (current) }
                            }
                        }
                        label.inline for=(format!("accept-{slug}")) {
                            span { input id=(format!("accept-{slug}")) type="checkbox" name="accept_cut_off" value="true";
                                " Save even if agents would lose their last path (audited)" }
                        }
                        button type="submit" id=(format!("save-{slug}")) { "Save servers" }
                    }
                }
            }
            @if view.may_change() && list.used_by.is_empty() {
                form.inline method="post" action="/serverlists" {
                    (view.csrf_field())
                    input type="hidden" name="action" value="delete";
                    input type="hidden" name="list" value=(list.name);
                    button.secondary type="submit" id=(format!("delete-{}", list.name.replace(' ', "-"))) { "Delete " (list.name) }
                }
            }
        }
        @if view.may_change() {
            div.columns {
                section aria-labelledby="new-list-heading" {
                    h2 #new-list-heading { "New server list" }
                    form.stacked method="post" action="/serverlists" #new-list {
                        (view.csrf_field())
                        input type="hidden" name="action" value="create";
                        label for="list-name" { "Name"
                            input #list-name type="text" name="name" required value=(sent_by("create", "name")) aria-describedby="create-name-error";
                            (error_for("create", "name"))
                        }
                        label for="list-servers" { "Servers, one per line (priority:URL)"
                            textarea #list-servers name="servers" rows="4" required placeholder="1:https://mgr1:443" aria-describedby="create-servers-error" { (sent_by("create", "servers")) }
                            (error_for("create", "servers"))
                        }
                        button type="submit" #create-list { "Create list" }
                    }
                }
                section aria-labelledby="copy-heading" {
                    h2 #copy-heading { "Copy to plain HTTP" }
                    p.muted { "The seed's step: the same servers on the clients-http listener, for agents that cannot follow a TLS change." }
                    form.stacked method="post" action="/serverlists" #copy-list {
                        (view.csrf_field())
                        input type="hidden" name="action" value="copy";
                        label for="copy-from" { "List"
                            select #copy-from name="list" {
                                @for list in &lists {
                                    option value=(list.name) selected[sent_by("copy", "list") == list.name] { (list.name) }
                                }
                            }
                        }
                        label for="copy-name" { "New name"
                            input #copy-name type="text" name="name" required value=(sent_by("copy", "name")) placeholder="Default-http" aria-describedby="copy-name-error";
                            (error_for("copy", "name"))
                        }
                        label for="copy-port" { "Port"
                            input #copy-port type="number" name="port" min="1" max="65535" value=(Some(sent_by("copy", "port")).filter(|p| !p.is_empty()).unwrap_or_else(|| "8014".into())) aria-describedby="copy-port-error";
                            (error_for("copy", "port"))
                        }
                        button type="submit" #copy { "Copy to HTTP" }
                    }
                }
            }
        }
    };
    respond::page(status, layout::shell(Some(view), TITLE, body))
}

/// `POST /serverlists`: create, copy or delete, by the form's `action`.
pub async fn change(app: &App, view: &View, form: &Form) -> HttpResponse {
    let caller = &view.caller;
    let name = form.text("name").unwrap_or_default();
    let outcome = match form.get("action") {
        Some("create") => serverlists::create(
            app,
            caller,
            NewServerList {
                name: name.clone(),
                servers: entries(form.get("servers").unwrap_or("")),
            },
        )
        .await
        .map(|list| {
            format!(
                "Created {} with {} server(s).",
                list.name,
                list.servers.len()
            )
        }),
        Some("copy") => match form.get("port").unwrap_or("8014").trim().parse::<u16>() {
            Ok(port) if port > 0 => serverlists::copy(
                app,
                caller,
                form.text("list").unwrap_or_default(),
                CopyList {
                    name: name.clone(),
                    protocol: Some(Protocol::Http),
                    port: Some(port),
                },
            )
            .await
            .map(|list| {
                format!(
                    "Copied to {}: every server on http, port {port}.",
                    list.name
                )
            }),
            _ => Err(ApiError::bad_request("port: a number from 1 to 65535")),
        },
        Some("edit") => {
            let list = form.text("list").unwrap_or_default();
            serverlists::update(
                app,
                caller,
                list.clone(),
                ServerListEdit {
                    servers: entries(form.get("servers").unwrap_or("")),
                    accept_cut_off: form.get("accept_cut_off") == Some("true"),
                },
            )
            .await
            .map(|saved| {
                format!(
                    "Saved {list}: {} server(s); its agents get the change at their next check-in.",
                    saved.servers.len()
                )
            })
        }
        Some("delete") => {
            let list = form.text("list").unwrap_or_default();
            serverlists::delete(app, caller, list.clone())
                .await
                .map(|_| format!("Deleted {list}."))
        }
        _ => Err(ApiError::bad_request(
            "action: no such change of a server list",
        )),
    };
    page(app, view, Some((form, outcome))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_one_per_line() {
        let cases = [
            ("", vec![]),
            ("1:https://mgr1:443", vec!["1:https://mgr1:443"]),
            (
                " 1:https://mgr1:443 \r\n\r\n2:http://mgr2:8014\n",
                vec!["1:https://mgr1:443", "2:http://mgr2:8014"],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(entries(text), expected, "{text:?}");
        }
    }
}
