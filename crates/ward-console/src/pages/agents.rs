//! Agents: a searchable, sortable, paginated table with filters, CSV of the current filter,
//! one agent's page, and moving the ticked agents to a group (the guard's refusal shown per
//! agent). Every filter, the search, the order and the page go to `operations::agents::page`,
//! which has the store do them where the agents are: a page of a million agents reads one
//! page of rows and one count.

use hyper::StatusCode;
use maud::{html, Markup};
use ward_api::fleet::{Agent, AgentSort, AgentsPage, AgentsQuery, MoveAgents, TlsVersionName};
use ward_server::api::{ApiError, HttpResponse};
use ward_server::operations::{agents, groups};
use ward_server::state::App;

use crate::layout::{self, View};
use crate::respond::{self, Form};

/// Rows per page.
pub const PAGE_SIZE: usize = 50;

/// The table's columns: what each sorts by, its word in the query string, its heading.
const COLUMNS: [(AgentSort, &str, &str); 9] = [
    (AgentSort::Id, "id", "Id"),
    (AgentSort::Hostname, "name", "Name"),
    (AgentSort::Group, "group", "Group"),
    (AgentSort::Online, "online", "Online"),
    (AgentSort::Channel, "channel", "Channel"),
    (AgentSort::TlsVersion, "tls", "TLS version"),
    (AgentSort::Highest, "highest", "Highest it speaks"),
    (AgentSort::LastSeen, "last_seen", "Last seen"),
    (AgentSort::Pending, "pending", "Pending"),
];

fn sort_named(word: &str) -> Option<AgentSort> {
    COLUMNS
        .iter()
        .find(|(_, key, _)| *key == word)
        .map(|(sort, _, _)| *sort)
}

fn sort_word(sort: AgentSort) -> &'static str {
    COLUMNS
        .iter()
        .find(|(column, _, _)| *column == sort)
        .map_or("id", |(_, key, _)| key)
}

/// The table's filters, order and page, from the query string.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// A case-insensitive part of the id or the name.
    pub search: Option<String>,
    pub online: Option<bool>,
    pub pending: Option<bool>,
    /// Only agents whose highest version is at most this.
    pub tls_max: Option<String>,
    pub group: Option<String>,
    /// The fingerprint of a TLS stack (its ClientHello).
    pub stack: Option<String>,
    pub sort: AgentSort,
    pub descending: bool,
    /// From 1.
    pub page: usize,
}

fn yes_no(word: Option<&str>) -> Option<bool> {
    match word {
        Some("true") | Some("yes") => Some(true),
        Some("false") | Some("no") => Some(false),
        _ => None,
    }
}

impl Filter {
    pub fn parse(query: &Form) -> Filter {
        Filter {
            search: query.text("q"),
            online: yes_no(query.get("online")),
            pending: yes_no(query.get("pending")),
            tls_max: query.text("tls_max"),
            group: query.text("group"),
            stack: query.text("stack"),
            sort: query.get("sort").and_then(sort_named).unwrap_or_default(),
            descending: query.get("dir") == Some("desc"),
            page: query
                .get("page")
                .and_then(|p| p.parse().ok())
                .filter(|p| *p >= 1)
                .unwrap_or(1),
        }
    }

    /// This filter as a query string, with `sort`/`dir`/`page` replaced.
    pub fn query(&self, sort: AgentSort, descending: bool, page: usize) -> String {
        let mut pairs = Form::default();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                pairs.0.push((key.to_string(), value));
            }
        };
        push("q", self.search.clone());
        push("online", self.online.map(|b| b.to_string()));
        push("pending", self.pending.map(|b| b.to_string()));
        push("tls_max", self.tls_max.clone());
        push("group", self.group.clone());
        push("stack", self.stack.clone());
        if sort != AgentSort::Id {
            push("sort", Some(sort_word(sort).into()));
        }
        if descending {
            push("dir", Some("desc".into()));
        }
        if page > 1 {
            push("page", Some(page.to_string()));
        }
        pairs.encode()
    }

    /// What the operation is asked: every agent the filter keeps, in its order (`page`:
    /// only that page of [`PAGE_SIZE`]).
    fn operation_query(&self, page: Option<usize>) -> Result<AgentsQuery, (&'static str, String)> {
        let tls_max = match &self.tls_max {
            None => None,
            Some(word) => Some(
                serde_json::from_value::<TlsVersionName>(serde_json::Value::String(word.clone()))
                    .map_err(|_| {
                    (
                        "tls_max",
                        format!("'{word}' is not a TLS version (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)"),
                    )
                })?,
            ),
        };
        Ok(AgentsQuery {
            group: self.group.clone(),
            pending: self.pending.filter(|p| *p),
            online: self.online,
            tls_max,
            silent_for: None,
            search: self.search.clone(),
            stack: self.stack.clone(),
            sort: Some(self.sort),
            descending: Some(self.descending),
            offset: page.map(|page| (page.max(1) - 1) * PAGE_SIZE),
            limit: page.map(|_| PAGE_SIZE),
        })
    }
}

/// The highest version an agent says it speaks.
pub fn highest(agent: &Agent) -> Option<&str> {
    agent
        .tls_versions
        .iter()
        .map(String::as_str)
        .filter(|v| version_rank(Some(v)).is_some())
        .max_by_key(|v| version_rank(Some(v)))
}

fn version_rank(version: Option<&str>) -> Option<usize> {
    version.and_then(|v| super::TLS_VERSIONS.iter().position(|known| *known == v))
}

fn badge(on: bool, yes: &str, no: &str, class_yes: &str) -> Markup {
    html! {
        @if on { span class=(format!("badge {class_yes}")) { (yes) } } @else { span.badge.off { (no) } }
    }
}

fn filters(filter: &Filter, groups: &[String], error: Option<&(&str, String)>) -> Markup {
    let field_error = |field: &str| -> Markup {
        html! {
            @if let Some((name, message)) = error {
                @if *name == field { span.field-error id=(format!("{field}-error")) role="alert" { (message) } }
            }
        }
    };
    html! {
        form.filters method="get" action="/agents" role="search" aria-label="Filter agents" {
            label for="q" { "Search (id or name)"
                input #q type="search" name="q" value=(filter.search.as_deref().unwrap_or(""))
                    aria-describedby="search-error";
                (field_error("search"))
            }
            label for="online" { "Online"
                select #online name="online" {
                    option value="" selected[filter.online.is_none()] { "any" }
                    option value="true" selected[filter.online == Some(true)] { "online" }
                    option value="false" selected[filter.online == Some(false)] { "offline" }
                }
            }
            label for="pending" { "Settings"
                select #pending name="pending" {
                    option value="" selected[filter.pending.is_none()] { "any" }
                    option value="true" selected[filter.pending == Some(true)] { "pending" }
                }
            }
            label for="tls_max" { "Highest TLS at most"
                select #tls_max name="tls_max" aria-describedby="tls_max-error" {
                    option value="" selected[filter.tls_max.is_none()] { "any" }
                    @for version in ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"] {
                        option value=(version) selected[filter.tls_max.as_deref() == Some(version)] { (version) }
                    }
                }
                (field_error("tls_max"))
            }
            label for="group" { "Group"
                select #group name="group" aria-describedby="group-error" {
                    option value="" selected[filter.group.is_none()] { "any" }
                    @for path in groups {
                        option value=(path) selected[filter.group.as_deref() == Some(path.as_str())] { (path) }
                    }
                }
                (field_error("group"))
            }
            label for="stack" { "TLS stack (fingerprint)"
                input #stack type="text" name="stack" value=(filter.stack.as_deref().unwrap_or(""))
                    aria-describedby="stack-error";
                (field_error("stack"))
            }
            button type="submit" #apply-filters { "Apply" }
            a href="/agents" { "Clear" }
        }
    }
}

async fn group_paths(app: &App) -> Vec<String> {
    let mut paths: Vec<String> = groups::list(app)
        .await
        .map(|groups| groups.into_iter().filter_map(|g| g.path).collect())
        .unwrap_or_default();
    paths.sort();
    paths
}

/// Where an operation's refusal belongs on this page: the field it names, if any.
fn field_of(error: &ApiError) -> Option<&'static str> {
    super::field_named(
        &error.message,
        &["group", "tls_max", "ids", "search", "stack"],
    )
}

/// How many pages `total` agents fill (at least one, empty).
pub fn pages_of(total: u64) -> usize {
    (total.div_ceil(PAGE_SIZE as u64) as usize).max(1)
}

/// One page of the agents `filter` keeps, and how many it keeps in all.
async fn fetch(app: &App, filter: &Filter, page: usize) -> Result<AgentsPage, ApiError> {
    let query = filter
        .operation_query(Some(page))
        .map_err(|(field, message)| ApiError::bad_request(format!("{field}: {message}")))?;
    agents::page(app, query).await
}

/// `GET /agents`.
pub async fn list(app: &App, view: &View, query: &Form) -> HttpResponse {
    let filter = Filter::parse(query);
    let groups = group_paths(app).await;
    let refused = |error: ApiError| {
        let field = field_of(&error).unwrap_or(
            if filter.group.is_some() && error.status == StatusCode::NOT_FOUND {
                "group"
            } else {
                ""
            },
        );
        (field, error.message)
    };
    let mut page = filter.page;
    let mut listed = fetch(app, &filter, page).await.map_err(refused);
    // A page past the end shows the last.
    if let Ok(found) = &listed {
        let last = pages_of(found.total);
        if page > last {
            page = last;
            listed = fetch(app, &filter, page).await.map_err(refused);
        }
    }
    let (status, error, rows, total) = match listed {
        Ok(found) => (StatusCode::OK, None, found.agents, found.total),
        Err(error) => (StatusCode::BAD_REQUEST, Some(error), Vec::new(), 0),
    };
    let pages = pages_of(total);
    let body = html! {
        (filters(&filter, &groups, error.as_ref()))
        @if let Some((field, message)) = &error {
            @if field.is_empty() { (layout::refusal("bad_request", message)) }
        }
        p #agents-count { (total) " agents match. "
            a href=(format!("/agents.csv?{}", filter.query(filter.sort, filter.descending, 1))) #csv { "Download as CSV" }
        }
        form method="post" action="/agents/move" #move-form {
            (view.csrf_field())
            table #agents {
                caption.muted { "Page " (page) " of " (pages) }
                thead {
                    tr {
                        @if view.may_change() {
                            th scope="col" { input #select-all type="checkbox" aria-label="Select every agent on this page"; }
                        }
                        @for (sort, _, label) in COLUMNS {
                            @let active = filter.sort == sort;
                            @let descending = active && !filter.descending;
                            th scope="col" aria-sort=(if active { if filter.descending { "descending" } else { "ascending" } } else { "none" }) {
                                a href=(format!("/agents?{}", filter.query(sort, descending, 1))) { (label) }
                            }
                        }
                        th scope="col" { "Stack" }
                    }
                }
                tbody {
                    @for agent in &rows {
                        tr {
                            @if view.may_change() {
                                td { input type="checkbox" name="id" value=(agent.id) aria-label=(format!("Select {}", agent.hostname)); }
                            }
                            td { a href=(format!("/agents/{}", respond::encode(&agent.id))) { code { (agent.id) } } }
                            td { (agent.hostname) }
                            td { (agent.group.as_deref().unwrap_or("")) }
                            td { (badge(agent.online, "online", "offline", "on")) }
                            td { (agent.channel.as_deref().unwrap_or("—")) }
                            td { (agent.tls_version.as_deref().unwrap_or("—")) }
                            td { (highest(agent).unwrap_or("unknown")) }
                            td { (layout::time(agent.last_seen.as_deref())) }
                            td { (badge(agent.pending, "pending", "acknowledged", "pending")) }
                            td { @if let Some(hello) = &agent.hello {
                                a href=(format!("/agents?stack={}", respond::encode(hello))) title=(hello) { code { (&hello[..hello.len().min(12)]) } }
                            } }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if page > 1 {
                    a href=(format!("/agents?{}", filter.query(filter.sort, filter.descending, page - 1))) rel="prev" { "← Previous" }
                }
                span { "Page " (page) " of " (pages) }
                @if page < pages {
                    a href=(format!("/agents?{}", filter.query(filter.sort, filter.descending, page + 1))) rel="next" #next-page { "Next →" }
                }
            }
            @if view.may_change() {
                fieldset {
                    legend { "Move the ticked agents" }
                    label for="move-group" { "To group"
                        select #move-group name="group" required {
                            @for path in &groups { option value=(path) { (path) } }
                        }
                    }
                    label for="accept_cut_off" {
                        span { input #accept_cut_off type="checkbox" name="accept_cut_off" value="true";
                            " Move even agents the move would cut off (audited)" }
                    }
                    button type="submit" #move { "Move" }
                }
            }
        }
    };
    respond::page(status, layout::shell(Some(view), "Agents", body))
}

fn csv_field(text: &str) -> String {
    // A cell a spreadsheet would run as a formula is quoted as text.
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The agents the filter keeps, every page, as CSV (RFC 4180).
pub fn to_csv(agents: &[Agent]) -> String {
    let mut out = String::from(
        "id,name,group,online,channel,tls_version,highest,stack,last_seen,pending\r\n",
    );
    for agent in agents {
        let row = [
            agent.id.as_str(),
            agent.hostname.as_str(),
            agent.group.as_deref().unwrap_or(""),
            if agent.online { "true" } else { "false" },
            agent.channel.as_deref().unwrap_or(""),
            agent.tls_version.as_deref().unwrap_or(""),
            highest(agent).unwrap_or(""),
            agent.hello.as_deref().unwrap_or(""),
            agent.last_seen.as_deref().unwrap_or(""),
            if agent.pending { "true" } else { "false" },
        ];
        out.push_str(&row.map(csv_field).join(","));
        out.push_str("\r\n");
    }
    out
}

/// `GET /agents.csv`: every agent the filter keeps (all pages), in the table's order.
pub async fn csv(app: &App, query: &Form) -> HttpResponse {
    let filter = Filter::parse(query);
    let operation_query = match filter.operation_query(None) {
        Ok(operation_query) => operation_query,
        Err((field, message)) => {
            return ApiError::bad_request(format!("{field}: {message}")).response()
        }
    };
    match agents::list(app, operation_query).await {
        Ok(agents) => respond::download("text/csv; charset=utf-8", "agents.csv", to_csv(&agents)),
        Err(error) => error.response(),
    }
}

/// `GET /agents/{id}`.
pub async fn show(app: &App, view: &View, id: &str) -> HttpResponse {
    let id = ward_server::api::percent_decode(id);
    let agent = match agents::get(app, id.clone()).await {
        Ok(agent) => agent,
        Err(error) => return super::refused(view, "Agent", &error),
    };
    let hello = match &agent.hello {
        Some(digest) => ward_server::operations::harden::hellos(app)
            .await
            .ok()
            .and_then(|hellos| hellos.hellos.into_iter().find(|h| &h.digest == digest)),
        None => None,
    };
    let refused = agents::refused_from(
        app,
        agent.id.clone(),
        std::time::Duration::from_secs(86_400),
        50,
    )
    .await;
    let body = html! {
        dl.facts #agent-facts {
            dt { "Id" } dd { code { (agent.id) } }
            dt { "Name" } dd { (agent.hostname) }
            dt { "Group" } dd { (agent.group.as_deref().unwrap_or("")) }
            dt { "Online" } dd { (badge(agent.online, "online", "offline", "on")) @if agent.held { " (push check-in held now)" } }
            dt { "Channel" } dd { (agent.channel.as_deref().unwrap_or("never checked in")) }
            dt { "Negotiated TLS" } dd { (agent.tls_version.as_deref().unwrap_or("—")) " " (agent.tls_group.as_deref().unwrap_or("")) }
            dt { "Versions it speaks" } dd { (agent.tls_versions.join(", ")) }
            dt { "Last seen" } dd { (layout::time(agent.last_seen.as_deref())) }
            dt { "Last check-in" } dd { (layout::time(agent.last_checkin.as_deref())) }
            dt { "Server" } dd { (agent.server.as_deref().unwrap_or("—")) }
            dt { "From" } dd { (agent.peer.as_deref().unwrap_or("—")) }
            dt { "Settings" } dd { "serial " (agent.serial) ", acknowledged " (agent.acked_serial)
                @if agent.pending { " " span.badge.pending { "pending" } } }
            @if let Some(settings) = &agent.settings {
                dt { "From its group" } dd { "server list " code { (settings.server_list) } ", every " (settings.interval) }
            }
            @if let Some(reverted) = &agent.reverted {
                dt { "Reverted" } dd.error { (format!("{reverted:?}")) }
            }
            dt { "System" } dd { (agent.os.name) " " (agent.os.version) ", agent " (agent.agent_version) }
            dt { "Enrolled" } dd { (layout::time(Some(&agent.enrolled))) }
        }
        h2 { "The ClientHello it offered" }
        @match (&agent.hello, &hello) {
            (None, _) => p.muted { "None kept: it never checked in over HTTPS, or reported no hello." },
            (Some(digest), None) => p { "Fingerprint " code { (digest) } " (its bytes are not kept)." },
            (Some(_), Some(hello)) => dl.facts #agent-hello {
                dt { "Fingerprint" } dd { code { (hello.digest) } }
                dt { "JA4" } dd { code { (hello.ja4.as_deref().unwrap_or("—")) } }
                dt { "Versions offered" } dd { (hello.offered_versions.as_ref().map(|v| v.join(", ")).unwrap_or_default()) }
                dt { "Cipher suites" } dd { (hello.cipher_suites.map(|n| n.to_string()).unwrap_or_default()) }
                dt { "Server name" } dd { (hello.server_name.as_deref().unwrap_or("—")) }
                dt { "Size" } dd { (hello.bytes) " bytes" }
                dt { "Seen" } dd { (hello.count) " times, last " (layout::time(Some(&hello.last_seen))) }
            },
        }
        h2 { "Refused handshakes from its address, last 24 hours" }
        @match &refused {
            Ok(refused) if refused.is_empty() => p.muted #agent-refused-none { "None." },
            Ok(refused) => {
                table #agent-refused {
                    caption.muted { "The newest 50, from " (agent.peer.as_deref().unwrap_or("")) " (this agent, or anything behind the same address)" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "Listener" } th scope="col" { "Peer" } th scope="col" { "Offered" } th scope="col" { "Why" } } }
                    tbody {
                        @for failure in refused {
                            tr {
                                td { (layout::time(Some(&failure.at))) }
                                td { (failure.listener) }
                                td { code { (failure.peer) } }
                                td { (if failure.offered_versions.is_empty() { "—".to_string() } else { failure.offered_versions.join(", ") }) }
                                td { (failure.reason) }
                            }
                        }
                    }
                }
            }
            Err(error) => (layout::refusal(error.code, &error.message)),
        }
        p.muted { "ward keeps each agent's last check-in and ClientHello; the history of its check-ins is in the server's log (debug level, one line each, with the agent, the listener and the peer)." }
    };
    respond::page(
        StatusCode::OK,
        layout::shell(Some(view), &format!("Agent {}", agent.hostname), body),
    )
}

/// `POST /agents/move`: through the same guarded operation as the admin API.
pub async fn move_agents(app: &App, view: &View, form: &Form) -> HttpResponse {
    let ids = form.all("id");
    let group = form.text("group").unwrap_or_default();
    let accept_cut_off = form.get("accept_cut_off") == Some("true");
    let result = if ids.is_empty() {
        Err(ApiError::bad_request(
            "ids: tick at least one agent to move",
        ))
    } else {
        agents::move_agents(
            app,
            &view.caller,
            MoveAgents {
                ids,
                group: group.clone(),
                accept_cut_off,
            },
        )
        .await
    };
    let (status, body) = match result {
        Ok(moved) => (
            StatusCode::OK,
            html! {
                p.notice role="status" #moved {
                    "Moved " (moved.moved.len()) " agents to " strong { (moved.group.as_deref().unwrap_or(&group)) }
                    @if let Some(serial) = moved.serial { " (their new serial: " (serial) ")" } "."
                }
                p { a href="/agents" { "Back to the agents" } }
            },
        ),
        Err(error) => (
            error.status,
            html! {
                (super::guard_refusal(&error, "Agents the move would cut off, and why"))
                p { a href="/agents" { "Back to the agents" } }
            },
        ),
    };
    respond::page(status, layout::shell(Some(view), "Move agents", body))
}

#[cfg(test)]
mod tests;
