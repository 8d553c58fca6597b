//! TLS: the exact plan as a form. The words an admin would put in `SSLProtocol` and
//! `SSLCipherSuite` (or a preset), for one listener or both, planned by the same operation as
//! `POST /api/v1/tls/plan` and `ward tls plan`: each listener's range now and after, every agent
//! cut off or at risk and why (its real ClientHello replayed through the proposed listener),
//! and every other peer's verdict. A plan changes nothing, so the form is a GET: a plan is a
//! link an admin can send.

use hyper::StatusCode;
use maud::{html, Markup};
use ward_api::tls::{AgentLine, ListenerChoice, Plan, PlanRequest};
use ward_server::api::{ApiError, HttpResponse};
use ward_server::operations::harden;
use ward_server::state::App;

use crate::layout::{self, View};
use crate::respond::{self, Form};

/// The fields of the form, in the order the operation's refusals name them.
const FIELDS: [&str; 7] = [
    "protocol",
    "cipher_suite_tls13",
    "cipher_suite",
    "certificate",
    "key",
    "preset",
    "listener",
];

/// The form's field a refusal concerns, or none.
pub fn field_of(message: &str) -> Option<&'static str> {
    super::field_named(message, &FIELDS)
}

/// The plan request a query asks for; `None` when it asks for nothing yet.
pub fn request(query: &Form) -> Option<PlanRequest> {
    let protocol = query.text("protocol");
    let cipher_suite = query.text("cipher_suite");
    let cipher_suite_tls13 = query.text("cipher_suite_tls13");
    let preset = query.text("preset");
    let certificate = query.text("certificate");
    let key = query.text("key");
    if protocol.is_none()
        && cipher_suite.is_none()
        && cipher_suite_tls13.is_none()
        && preset.is_none()
        && certificate.is_none()
    {
        return None;
    }
    let listener = match query.get("listener") {
        Some("clients") => Some(ListenerChoice::Clients),
        Some("console") => Some(ListenerChoice::Console),
        _ => None,
    };
    Some(PlanRequest {
        protocol,
        cipher_suite,
        cipher_suite_tls13,
        certificate,
        key,
        preset,
        listener,
        limit: Some(1000),
        ..PlanRequest::default()
    })
}

/// Agents a plan lists, with the evidence and the reason.
pub fn agents_table(id: &str, caption: &str, lines: &[AgentLine]) -> Markup {
    html! {
        table id=(id) {
            caption { (caption) }
            thead { tr {
                th scope="col" { "Agent" } th scope="col" { "Name" } th scope="col" { "Group" }
                th scope="col" { "Highest" } th scope="col" { "Evidence" } th scope="col" { "Why" }
            } }
            tbody {
                @for line in lines {
                    tr {
                        td { a href=(format!("/agents/{}", respond::encode(&line.id))) { code { (line.id) } } }
                        td { (line.hostname.as_deref().unwrap_or("")) }
                        td { (line.group.as_deref().unwrap_or("")) }
                        td { (line.highest.as_deref().unwrap_or("unknown")) }
                        td { (line.evidence.as_deref().unwrap_or("")) }
                        td { (line.reason.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

/// A refusal of a proposal: the field it names (if any), its code and its sentence.
pub type Refused = (Option<&'static str>, &'static str, String);

/// The refusal of `error`, placed by the field it names.
pub fn refused_field(error: &ApiError) -> Refused {
    (field_of(&error.message), error.code, error.message.clone())
}

/// The proposal's fields (SSLProtocol, both suite lists, a preset, the listener), filled from
/// `query`, with `refusal` shown next to the field it names.
pub fn proposal_fields(query: &Form, refusal: Option<&Refused>) -> Markup {
    let error_for = |field: &str| -> Markup {
        html! {
            @if let Some((Some(name), _, message)) = refusal {
                @if *name == field { span.field-error id=(format!("{field}-error")) role="alert" { (message) } }
            }
        }
    };
    let value = |field: &str| query.get(field).unwrap_or("").to_string();
    html! {
        label for="protocol" { "SSLProtocol"
            input #protocol type="text" name="protocol" value=(value("protocol"))
                placeholder="-all +TLSv1.2" aria-describedby="protocol-error";
            (error_for("protocol"))
        }
        label for="cipher_suite" { "SSLCipherSuite (TLS 1.2 and below)"
            input #cipher_suite type="text" name="cipher_suite" value=(value("cipher_suite"))
                aria-describedby="cipher_suite-error";
            (error_for("cipher_suite"))
        }
        label for="cipher_suite_tls13" { "SSLCipherSuite TLSv1.3"
            input #cipher_suite_tls13 type="text" name="cipher_suite_tls13" value=(value("cipher_suite_tls13"))
                aria-describedby="cipher_suite_tls13-error";
            (error_for("cipher_suite_tls13"))
        }
        label for="certificate" { "SSLCertificateFile (a file on the server, PEM, the leaf first)"
            input #certificate type="text" name="certificate" value=(value("certificate"))
                placeholder="/etc/ward/new-cert.pem" aria-describedby="certificate-error";
            (error_for("certificate"))
        }
        label for="key" { "SSLCertificateKeyFile"
            input #key type="text" name="key" value=(value("key")) aria-describedby="key-error";
            (error_for("key"))
        }
        label for="preset" { "Or a preset"
            select #preset name="preset" aria-describedby="preset-error" {
                option value="" { "none" }
                @for preset in ward_plan::preset::PRESETS {
                    option value=(preset.name) selected[query.get("preset") == Some(preset.name)] {
                        (preset.name) " — " (preset.title)
                    }
                }
            }
            (error_for("preset"))
        }
        label for="listener" { "Listener"
            select #listener name="listener" {
                option value="all" selected[query.get("listener").is_none_or(|l| l == "all")] { "both" }
                option value="clients" selected[query.get("listener") == Some("clients")] { "clients (agents)" }
                option value="console" selected[query.get("listener") == Some("console")] { "console" }
            }
        }
    }
}

/// A plan's verdict: each listener now and after, the agents cut off or at risk and why, the
/// other peers.
pub fn verdict(plan: &Plan) -> Markup {
    html! {
        section aria-labelledby="verdict-heading" #verdict {
            h2 #verdict-heading { "Verdict: " (plan.change) }
            @if plan.impact.ok {
                p.notice role="status" #plan-ok { "Nobody is cut off and nobody is at risk: "
                    (plan.impact.agents) " agents keep a path." }
            } @else {
                p.refusal role="status" #plan-not-ok {
                    (plan.impact.counts.cut_off) " agents would be cut off and "
                    (plan.impact.counts.at_risk) " are at risk, of " (plan.impact.agents)
                    ". A harden moves the ones cut off to the plain-HTTP listener first." }
            }
            @for warning in &plan.warnings { p.muted { "Apache: " (warning) } }
            table #plan-listeners {
                caption { "Each listener now and after" }
                thead { tr { th scope="col" { "Listener" } th scope="col" { "File" } th scope="col" { "Now" } th scope="col" { "After" } } }
                tbody {
                    @for (name, listener) in &plan.listeners {
                        tr {
                            td { (name) } td { code { (listener.file) } }
                            td { (listener.current.join(", ")) }
                            td { @if listener.changes { strong { (listener.planned.join(", ")) } } @else { (listener.planned.join(", ")) } }
                        }
                    }
                }
            }
            @if !plan.impact.cut_off.is_empty() {
                (agents_table("plan-cut-off", "Agents cut off", &plan.impact.cut_off))
            }
            @if !plan.impact.at_risk.is_empty() {
                (agents_table("plan-at-risk", "Agents at risk", &plan.impact.at_risk))
            }
            @if !plan.peers.is_empty() {
                table #plan-peers {
                    caption { "Other peers seen on these listeners (the last day)" }
                    thead { tr { th scope="col" { "Listener" } th scope="col" { "Address" } th scope="col" { "Verdict" } th scope="col" { "Why" } } }
                    tbody {
                        @for peer in &plan.peers {
                            tr { td { (peer.listener) } td { (peer.address) } td { (peer.verdict.replace('_', " ")) } td { (peer.reason) } }
                        }
                    }
                }
            }
        }
    }
}

/// Each HTTPS listener as it runs now: its file, versions, suites, groups and certificates.
fn listeners(app: &App) -> Markup {
    use ward_server::config::Role;
    let default = |text: Option<String>| text.unwrap_or_else(|| "(OpenSSL's default)".into());
    html! {
        table #listeners {
            caption { "The HTTPS listeners now" }
            thead { tr {
                th scope="col" { "Listener" } th scope="col" { "File" } th scope="col" { "Versions" }
                th scope="col" { "Suites (TLS 1.2 and below)" } th scope="col" { "TLS 1.3 suites" }
                th scope="col" { "Key exchange groups" } th scope="col" { "Certificates (days left)" }
            } }
            tbody {
                @for role in [Role::Console, Role::Clients] {
                    @let tls = app.tls.current(role);
                    @let policy = &tls.policy;
                    tr {
                        td { (role.name()) }
                        td { code { (tls.file.display()) } }
                        td { (policy.protocol.range.versions().map(|v| v.name()).collect::<Vec<_>>().join(", ")) }
                        td { code { (default(policy.cipher_list.as_ref().map(|c| c.value.clone()))) } }
                        td { code { (default(policy.tls13_ciphersuites.as_ref().map(|c| c.value.clone()))) } }
                        td { code { (policy.groups.as_ref().map(|g| g.value.clone()).unwrap_or_else(|| "(ward's default, post-quantum first)".into())) } }
                        td {
                            @for (file, seconds) in ward_server::listener_tls::certificate_expiry(policy, app.data.root()) {
                                code { (file) } " (" (seconds.div_euclid(86_400)) ")" br;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The fleet by TLS stack (one ClientHello each): what each offers, and how many agents run it.
async fn stacks(app: &App) -> Markup {
    let readiness = harden::readiness(
        app,
        ward_api::tls::ReadinessQuery {
            limit: Some(0),
            ..Default::default()
        },
    )
    .await;
    html! {
        @match readiness {
            Ok(readiness) => {
                table #stacks {
                    caption { "Readiness by TLS stack (each agent's last ClientHello)" }
                    thead { tr { th scope="col" { "Stack (JA4)" } th.num scope="col" { "Agents" } th scope="col" { "Offers" } th scope="col" { "Post-quantum" } th scope="col" { "Note" } } }
                    tbody {
                        @for stack in &readiness.stacks {
                            tr {
                                td { @match &stack.fingerprint {
                                    Some(digest) => a href=(format!("/agents?stack={}", respond::encode(digest))) { code { (stack.ja4.as_deref().unwrap_or(digest)) } },
                                    None => span.muted { "no ClientHello kept" },
                                } }
                                td.num { (stack.agents) }
                                td { (stack.offered_versions.as_ref().map(|v| v.join(", ")).unwrap_or_default()) }
                                td { (match stack.post_quantum { Some(true) => "yes", Some(false) => "no", None => "" }) }
                                td { (stack.note.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            Err(error) => (layout::refusal(error.code, &error.message)),
        }
    }
}

/// `GET /tls` (and `GET /tls?protocol=...`: the plan).
pub async fn page(app: &App, view: &View, query: &Form) -> HttpResponse {
    let asked = request(query);
    let planned = match asked {
        Some(request) => Some(harden::plan(app, request).await),
        None => None,
    };
    let refusal = match &planned {
        Some(Err(error)) => Some(refused_field(error)),
        _ => None,
    };
    let status = match &planned {
        Some(Err(error)) => error.status,
        _ => StatusCode::OK,
    };
    let overview = match &planned {
        None => Some(stacks(app).await),
        Some(_) => None,
    };
    let body = html! {
        (listeners(app))
        @if let Some(stacks) = overview { (stacks) }
        p { a href="/tls/harden" { "Harden TLS (the wizard)" } " · " a href="/tls/rotations" { "CA and key rotations" } }
        h2 { "Plan a change" }
        p { "Propose a change in the words of Apache's directives. The plan replays what each agent
            really sent through the proposed listener: nothing changes until a harden applies it." }
        form.stacked method="get" action="/tls" #plan-form {
            (proposal_fields(query, refusal.as_ref()))
            button type="submit" #plan { "Plan" }
        }
        @if let Some((None, code, message)) = &refusal { (layout::refusal(code, message)) }
        @if let Some(Ok(plan)) = &planned {
            (verdict(plan))
            p { a href=(format!("/tls/harden?{}", query.encode())) #harden-this { "Harden with this plan" }
                " — the wizard moves whoever it would cut off to the plain-HTTP listener first, waits for them, then applies it." }
        }
    };
    respond::page(status, layout::shell(Some(view), "TLS plan", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_asked_only_with_something_to_plan() {
        let cases = [
            ("", None),
            ("listener=clients", None),
            (
                "protocol=-all+%2BTLSv1.2",
                Some(("-all +TLSv1.2", None, "all")),
            ),
            (
                "protocol=TLSv1.2&listener=clients",
                Some(("TLSv1.2", None, "clients")),
            ),
            (
                "preset=mozilla-modern&listener=console",
                Some(("", Some("mozilla-modern"), "console")),
            ),
        ];
        for (query, expected) in cases {
            let asked = request(&Form::parse(query.as_bytes()));
            let got = asked.map(|r| {
                (
                    r.protocol.unwrap_or_default(),
                    r.preset,
                    r.listener.unwrap_or_default().name(),
                )
            });
            let expected = expected.map(|(p, preset, l): (&str, Option<&str>, &str)| {
                (p.to_string(), preset.map(str::to_string), l)
            });
            assert_eq!(got, expected, "{query}");
        }
    }

    #[test]
    fn a_certificate_pair_alone_is_something_to_plan() {
        let asked = request(&Form::parse(b"certificate=%2Fc.pem&key=%2Fk.pem")).unwrap();
        assert_eq!(
            (asked.certificate.as_deref(), asked.key.as_deref()),
            (Some("/c.pem"), Some("/k.pem"))
        );
        assert_eq!(asked.protocol, None);
    }

    #[test]
    fn a_refusal_goes_next_to_the_field_it_names() {
        let cases = [
            ("protocol: Illegal protocol 'TLSv1.0'", Some("protocol")),
            (
                "cipher_suite_tls13: no suite matches",
                Some("cipher_suite_tls13"),
            ),
            ("cipher_suite: no suite matches", Some("cipher_suite")),
            ("'preset' is not known", Some("preset")),
            ("the plan could not be made", None),
        ];
        for (message, expected) in cases {
            assert_eq!(field_of(message), expected, "{message}");
        }
    }
}
