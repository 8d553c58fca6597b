//! The dashboard: the fleet by the TLS version each agent negotiated, per listener; agents
//! online, offline and pending; refused handshakes of the last 24 hours by reason; the
//! post-quantum share; certificates and the days they have left; rotations under way.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::StatusCode;
use maud::{html, Markup};
use ward_api::fleet::FleetSummary;
use ward_server::api::HttpResponse;
use ward_server::config::Role;
use ward_server::operations::{agents, agreement, ca, server};
use ward_server::state::App;

use crate::chart::{self, Bar};
use crate::layout::{self, View};
use crate::respond;

/// What the dashboard shows of the fleet's figures (pure: table-tested).
#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    pub agents: u64,
    pub online: u64,
    pub offline: u64,
    pub pending: u64,
    pub reverted: u64,
    /// Agents whose last check-in came over HTTPS, by the version it negotiated.
    pub https_by_version: BTreeMap<String, u64>,
    /// Agents whose last check-in came over plain HTTP (the clients-http listener).
    pub plain_http: u64,
    /// Agents that never checked in.
    pub never: u64,
}

pub fn count(summary: &FleetSummary) -> Counts {
    let mut counts = Counts {
        agents: summary.agents,
        online: summary.online,
        offline: summary.agents.saturating_sub(summary.online),
        pending: summary.pending,
        reverted: summary.reverted,
        ..Counts::default()
    };
    for row in &summary.by_version {
        match row.channel.as_deref() {
            Some("https") => {
                let version = row.tls_version.clone().unwrap_or_else(|| "unknown".into());
                *counts.https_by_version.entry(version).or_default() += row.agents;
            }
            Some(_) => counts.plain_http += row.agents,
            None => counts.never += row.agents,
        }
    }
    counts
}

/// The bars of the "by negotiated version" chart: each version the fleet speaks, newest
/// first, then plain HTTP and never.
pub fn version_bars(counts: &Counts) -> Vec<Bar> {
    let mut bars = Vec::new();
    // Newest first, so the chart reads top down from the versions a hardening keeps.
    for version in super::TLS_VERSIONS.into_iter().rev() {
        if let Some(&value) = counts.https_by_version.get(version) {
            let class = if matches!(version, "TLSv1.3" | "TLSv1.2") {
                ""
            } else {
                "legacy"
            };
            bars.push(Bar {
                label: format!("clients · {version}"),
                value,
                class,
            });
        }
    }
    for (version, &value) in &counts.https_by_version {
        if !super::TLS_VERSIONS.contains(&version.as_str()) {
            bars.push(Bar {
                label: format!("clients · {version}"),
                value,
                class: "none",
            });
        }
    }
    if counts.plain_http > 0 {
        bars.push(Bar {
            label: "clients-http · plain".into(),
            value: counts.plain_http,
            class: "plain",
        });
    }
    if counts.never > 0 {
        bars.push(Bar {
            label: "never checked in".into(),
            value: counts.never,
            class: "none",
        });
    }
    bars
}

fn card(id: &str, figure: impl std::fmt::Display, label: &str, href: Option<String>) -> Markup {
    html! {
        div.card #(id) {
            span.figure { (figure) }
            @if let Some(href) = href {
                a.label href=(href) { (label) }
            } @else {
                span.label { (label) }
            }
        }
    }
}

pub async fn page(app: &App, view: &View) -> HttpResponse {
    let summary = match agents::summary(app).await {
        Ok(summary) => summary,
        Err(error) => return super::refused(view, "Dashboard", &error),
    };
    let refused = server::refused_by_kind(app, Duration::from_secs(86_400)).await;
    let ca = ca::status(app).await.ok();
    let key = agreement::status(app).await.ok();
    let counts = count(&summary);
    let post_quantum_share = if summary.over_https == 0 {
        0.0
    } else {
        summary.post_quantum as f64 / summary.over_https as f64
    };
    let mut reason_bars: Vec<Bar> = refused
        .as_ref()
        .map(|kinds| {
            kinds
                .iter()
                .map(|(kind, value)| Bar {
                    label: kind.replace('_', " "),
                    value: *value,
                    class: "legacy",
                })
                .collect()
        })
        .unwrap_or_default();
    reason_bars.sort_by(|a, b| b.value.cmp(&a.value).then(a.label.cmp(&b.label)));
    let mut certificates = Vec::new();
    for role in [Role::Console, Role::Clients] {
        let tls = app.tls.current(role);
        for (file, seconds) in
            ward_server::listener_tls::certificate_expiry(&tls.policy, app.data.root())
        {
            certificates.push((role.name(), file, seconds.div_euclid(86_400)));
        }
    }
    let body = html! {
        section aria-labelledby="fleet-heading" {
            h2 #fleet-heading { "Fleet" }
            div.cards {
                (card("agents-total", counts.agents, "agents", Some("/agents".into())))
                (card("agents-online", counts.online, "online", Some("/agents?online=true".into())))
                (card("agents-offline", counts.offline, "offline", Some("/agents?online=false".into())))
                (card("agents-pending", counts.pending, "pending settings", Some("/agents?pending=true".into())))
                (card("post-quantum", format!("{:.0}%", post_quantum_share * 100.0),
                    &format!("post-quantum key exchange ({} of {} over HTTPS)",
                        summary.post_quantum, summary.over_https), None))
                @if counts.reverted > 0 {
                    (card("agents-reverted", counts.reverted, "reverted their settings", None))
                }
            }
        }
        div.charts {
            figure {
                figcaption { "Agents by the TLS version they negotiated, per listener" }
                (chart::bars("chart-versions", "Agents by negotiated TLS version", &version_bars(&counts)))
            }
            figure {
                figcaption { "Refused handshakes, last 24 hours, by reason" }
                @match &refused {
                    Ok(_) => (chart::bars("chart-refused", "Refused handshakes by reason", &reason_bars)),
                    Err(error) => (layout::refusal(error.code, &error.message)),
                }
            }
        }
        section aria-labelledby="certs-heading" {
            h2 #certs-heading { "Certificates" }
            table {
                thead { tr { th scope="col" { "Listener" } th scope="col" { "File" } th.num scope="col" { "Days left" } } }
                tbody {
                    @for (listener, file, days) in &certificates {
                        tr {
                            td { (listener) }
                            td { code { (file) } }
                            td.num { @if *days < 30 { strong.error { (days) } } @else { (days) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="rotations-heading" {
            h2 #rotations-heading { "Rotations" }
            ul {
                li #rotation-ca {
                    "CA: "
                    @match &ca {
                        Some(status) if status.under_way => strong { "rotation under way" },
                        Some(_) => "none under way",
                        None => "unknown",
                    }
                }
                li #rotation-key {
                    "Agreement key: "
                    @match &key {
                        Some(status) if status.under_way => strong { "rotation under way" },
                        Some(_) => "none under way",
                        None => "unknown",
                    }
                }
            }
        }
    };
    respond::page(StatusCode::OK, layout::shell(Some(view), "Dashboard", body))
}

#[cfg(test)]
mod tests;
