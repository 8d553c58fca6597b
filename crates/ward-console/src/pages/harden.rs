//! TLS: the harden wizard, the seed's procedure in the browser. It shows the plan, asks for
//! confirmation, then runs the same operations as `ward tls harden`: stage (the agents the
//! change would cut off move to a legacy group with an HTTP server list), wait (a live list of
//! who has not acknowledged yet), apply (the conf files edited and reloaded, guarded again by
//! the server) and verify (each listener scanned, then the fleet watched checking in). Rollback
//! is offered at every step after the first.
//!
//! The wizard keeps no state of its own: where it is comes from the harden state the server
//! records (`GET /tls/harden`), so a closed tab, another admin or the CLI all see the same
//! harden. The live parts are a fragment (`/tls/harden/progress`) that the script asks for
//! again every two seconds while something is awaited; without the script the page refreshes
//! itself.
//!
//! What is decided from the server's answers is `ward_api::harden`, shared with the CLI.

use hyper::StatusCode;
use maud::{html, Markup};
use ward_api::harden::{self as decide, HardenState, TlsChange};
use ward_api::server::SiteServer;
use ward_api::tls::{
    ApplyRequest, HardenStatus, PlanRequest, ReadinessQuery, RollbackRequest, StageRequest, Step,
};
use ward_server::api::{ApiError, HttpResponse};
use ward_server::operations::{harden, server};
use ward_server::state::App;

use super::tls;
use crate::layout::{self, View};
use crate::respond::{self, Form};

const TITLE: &str = "Harden TLS";

/// The wizard's steps, as the page numbers them.
const STEPS: [&str; 5] = ["Plan", "Stage", "Wait", "Apply", "Verify"];

/// How often a page that awaits something refreshes itself when the script does not run.
const REFRESH_SECONDS: u32 = 5;

/// How long after an apply the page keeps watching for agents to check in again.
const WATCH_MS: i64 = 15 * 60 * 1000;

/// Where the wizard is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing proposed: the form.
    Propose,
    /// A proposal planned, waiting for the admin's confirmation.
    Review,
    /// Staged: waiting for the moved agents to acknowledge.
    Wait,
    /// Applied: verify and watch.
    Done,
}

impl Phase {
    /// The step of [`STEPS`] the page marks as current.
    fn step(self) -> usize {
        match self {
            Phase::Propose | Phase::Review => 0,
            Phase::Wait => 2,
            Phase::Done => 4,
        }
    }
}

/// Where the wizard is, from the recorded harden and whether a proposal is asked for. A staged
/// harden is finished (or rolled back) before another is proposed.
pub fn phase(state: Option<&HardenState>, proposing: bool) -> Phase {
    match state.map(|s| s.step) {
        Some(Step::Staged) => Phase::Wait,
        _ if proposing => Phase::Review,
        Some(Step::Applied) => Phase::Done,
        _ => Phase::Propose,
    }
}

/// Why the wizard will not change this server alone: it is one of a site's servers, each
/// with its own conf files, and `ward tls harden` changes them together.
pub fn site_refusal(servers: &[SiteServer]) -> Option<String> {
    let others: Vec<&str> = servers
        .iter()
        .filter(|s| !s.this)
        .map(|s| s.name.as_str())
        .collect();
    (!others.is_empty()).then(|| {
        format!(
            "this server shares its database with {} other server(s) ({}), each with its own \
             conf files; the wizard changes one server's files only, so run `ward tls harden` \
             (which stages once and applies on every server of the site, or none)",
            others.len(),
            others.join(", ")
        )
    })
}

/// What a recorded harden sets, in Apache's words.
fn described(state: &HardenState) -> String {
    let mut words = Vec::new();
    if !state.protocol.is_empty() {
        words.push(format!("SSLProtocol {}", state.protocol));
    }
    if let Some(list) = &state.cipher_suite {
        words.push(format!("SSLCipherSuite {list}"));
    }
    if let Some(list) = &state.cipher_suite_tls13 {
        words.push(format!("SSLCipherSuite TLSv1.3 {list}"));
    }
    if let Some((certificate, _)) = &state.certificate {
        words.push(format!("SSLCertificateFile {certificate}"));
    }
    format!("{} on {}", words.join(", "), state.listener)
}

fn steps(phase: Phase) -> Markup {
    let current = phase.step();
    html! {
        ol.steps aria-label="Steps" {
            @for (index, name) in STEPS.iter().enumerate() {
                @if index == current {
                    li.current aria-current="step" { (name) }
                } @else if index < current {
                    li.done { (name) " ✓" }
                } @else {
                    li { (name) }
                }
            }
        }
    }
}

/// A form that posts the change's fields (and the CSRF token) to `action`.
fn change_fields(change: &TlsChange) -> Markup {
    let fields = [
        ("protocol", change.protocol.as_deref()),
        ("cipher_suite", change.cipher_suite.as_deref()),
        ("cipher_suite_tls13", change.cipher_suite_tls13.as_deref()),
        ("certificate", change.certificate.as_deref()),
        ("key", change.key.as_deref()),
        ("preset", change.preset.as_deref()),
        ("listener", change.listener.map(|l| l.name())),
    ];
    html! {
        @for (name, value) in fields {
            @if let Some(value) = value { input type="hidden" name=(name) value=(value); }
        }
    }
}

/// The change a posted form (or a query) asks for: the plan form's fields.
fn change_of_form(form: &Form) -> Option<TlsChange> {
    Some(tls::request(form)?.change())
}

fn rollback_form(view: &View, staged: bool) -> Markup {
    html! {
        @if view.may_change() {
            form.stacked method="post" action="/tls/rollback" #rollback-form {
                (view.csrf_field())
                label.inline for="move_back" {
                    span { input #move_back type="checkbox" name="move_back" value="true" checked[staged];
                        " Also move the agents it moved back to their groups" }
                }
                button.secondary type="submit" #rollback {
                    @if staged { "Undo the moves" } @else { "Roll back" }
                }
            }
        }
    }
}

/// `GET /tls/harden`: the wizard at the step the recorded harden is at.
pub async fn page(app: &App, view: &View, query: &Form) -> HttpResponse {
    let status = match harden::status(app).await {
        Ok(status) => status,
        Err(error) => return super::refused(view, TITLE, &error),
    };
    let proposing = tls::request(query).is_some();
    match phase(status.state.as_ref(), proposing) {
        Phase::Propose => propose(view, query, &status, None),
        Phase::Review => review(app, view, query).await,
        phase @ (Phase::Wait | Phase::Done) => run(app, view, phase, &status).await,
    }
}

fn propose(
    view: &View,
    query: &Form,
    status: &HardenStatus,
    refusal: Option<tls::Refused>,
) -> HttpResponse {
    let http_status = match &refusal {
        Some(_) => StatusCode::UNPROCESSABLE_ENTITY,
        None => StatusCode::OK,
    };
    let body = html! {
        (steps(Phase::Propose))
        @if let Some(state) = status.state.as_ref().filter(|s| s.step == Step::RolledBack) {
            p.muted #last-harden { "The last harden (" (described(state)) ") was rolled back." }
        }
        p { "The change to make, in the words of Apache's directives. The next page shows who it
            would cut off before anything changes." }
        form.stacked method="get" action="/tls/harden" #harden-form {
            (tls::proposal_fields(query, refusal.as_ref()))
            button type="submit" #harden-plan { "Plan the harden" }
        }
        @if let Some((None, code, message)) = &refusal { (layout::refusal(code, message)) }
    };
    respond::page(http_status, layout::shell(Some(view), TITLE, body))
}

async fn review(app: &App, view: &View, query: &Form) -> HttpResponse {
    let Some(request) = tls::request(query) else {
        return propose(view, query, &empty_status(), None);
    };
    let plan = match harden::plan(app, request).await {
        Ok(plan) => plan,
        Err(error) => {
            return propose(
                view,
                query,
                &empty_status(),
                Some(tls::refused_field(&error)),
            );
        }
    };
    let site = match server::servers(app).await {
        Ok(servers) => site_refusal(&servers.servers),
        Err(error) => Some(error.message),
    };
    let blocked = decide::may_start(&plan, false).err().or(site);
    let change = change_of_form(query).unwrap_or_default();
    let moving = plan.impact.counts.cut_off;
    let body = html! {
        (steps(Phase::Review))
        (tls::verdict(&plan))
        h2 { "What the harden will do" }
        ol #harden-steps {
            li { strong { "Stage: " } "copy the server lists these agents use to HTTP variants on the
                clients-http port, and move " (moving) " agent(s) into a legacy group." }
            li { strong { "Wait: " } "until every moved agent has acknowledged its new settings
                (a live list shows who is still pending)." }
            li { strong { "Apply: " } "set " code { (plan.change) } " in the listener file(s),
                check the configuration, reload. The server plans again first and refuses if anyone
                would lose their last path." }
            li { strong { "Verify: " } "scan the HTTPS listeners, then watch the fleet check in." }
        }
        @if let Some(reason) = &blocked {
            div.refusal role="alert" #harden-blocked { strong { "The harden cannot start: " } (reason) }
        } @else if view.may_change() {
            form.stacked method="post" action="/tls/harden/stage" #harden-confirm {
                (view.csrf_field())
                (change_fields(&change))
                label for="legacy_group" { "Move them all into one group (optional)"
                    input #legacy_group type="text" name="legacy_group" placeholder="My Company/Legacy TLS"
                        aria-describedby="legacy_group-help";
                    span.muted #legacy_group-help { "Empty: a “Legacy TLS” subgroup under each agent's group." }
                }
                button type="submit" #harden-start { "Start: stage and move " (moving) " agent(s)" }
            }
        }
        p { a href="/tls/harden" { "Change the proposal" } }
    };
    respond::page(StatusCode::OK, layout::shell(Some(view), TITLE, body))
}

fn empty_status() -> HardenStatus {
    HardenStatus {
        state: None,
        acknowledged: Vec::new(),
        unacknowledged: Vec::new(),
    }
}

async fn run(app: &App, view: &View, phase: Phase, status: &HardenStatus) -> HttpResponse {
    let Some(state) = &status.state else {
        return propose(view, &Form::default(), status, None);
    };
    let verified = match phase {
        Phase::Done => Some(harden::verify(app).await),
        _ => None,
    };
    let live = progress_of(app, view, state, status).await;
    let body = html! {
        (steps(phase))
        p #harden-change { "Harden: " strong { (described(state)) } ", started " (layout::time(Some(&ward_server::api::time(state.started_ms)))) "." }
        @match &verified {
            Some(Ok(verified)) => {
                table #verify {
                    caption { "Each HTTPS listener scanned from the server (one handshake per version)" }
                    thead { tr { th scope="col" { "Listener" } th scope="col" { "Address" } th scope="col" { "Accepts" } th scope="col" { "Its file enables" } th scope="col" { "Verdict" } } }
                    tbody {
                        @for listener in &verified.listeners {
                            tr {
                                td { (listener.listener) } td { code { (listener.address) } }
                                td { (listener.accepted.join(", ")) } td { (listener.enabled.join(", ")) }
                                td { @if listener.ok { span.badge.on { "as planned" } } @else { span.badge.pending { "differs" } } }
                            }
                        }
                    }
                }
            }
            Some(Err(error)) => { (layout::refusal(error.code, &error.message)) }
            None => {}
        }
        (live.markup)
        h2 { "Undo" }
        @if phase == Phase::Wait {
            p.muted { "TLS has not been touched yet. Undoing puts the moved agents back where they were." }
        } @else {
            p.muted { "Rolling back puts both conf files back as they were before this harden and reloads,
                after the same plan (it refuses if that would cut anyone off)." }
        }
        (rollback_form(view, phase == Phase::Wait))
    };
    // Without the script, a page that awaits something asks again by itself: all through the
    // wait, and after the apply while the live part is watched.
    let awaiting = match state.step {
        Step::Staged => true,
        Step::Applied => live.polled,
        Step::RolledBack => false,
    };
    let refresh = awaiting.then_some(REFRESH_SECONDS);
    respond::page(
        StatusCode::OK,
        layout::document(Some(view), TITLE, body, refresh),
    )
}

fn watching(state: &HardenState) -> bool {
    state
        .applied_ms
        .is_some_and(|at| ward_proto::now_ms() - at < WATCH_MS)
}

async fn silent(app: &App, state: &HardenState) -> Result<Vec<ward_api::tls::AgentLine>, ApiError> {
    let query = ReadinessQuery {
        limit: Some(1000),
        offline_intervals: None,
        silent_since: state.applied_ms.map(|at| at.max(0) as u64),
    };
    Ok(harden::readiness(app, query)
        .await?
        .silent_since
        .unwrap_or_default())
}

/// `GET /tls/harden/progress`: the live part alone, for the script to swap in.
pub async fn progress(app: &App, view: &View) -> HttpResponse {
    let status = match harden::status(app).await {
        Ok(status) => status,
        Err(error) => return super::refused(view, TITLE, &error),
    };
    let markup = match &status.state {
        Some(state) => progress_of(app, view, state, &status).await.markup,
        None => html! { section #progress { p { "No harden is under way." } } },
    };
    respond::page(StatusCode::OK, markup)
}

/// The live section, and whether it carries `data-poll` (something is awaited, so the script
/// asks for it again).
struct Live {
    markup: Markup,
    polled: bool,
}

/// The live section: in the wait, who is still pending; after the apply, who has not checked
/// in since.
async fn progress_of(app: &App, view: &View, state: &HardenState, status: &HardenStatus) -> Live {
    match state.step {
        Step::Staged => waiting(app, view, state, status).await,
        Step::Applied => watched(app, state).await,
        Step::RolledBack => Live {
            markup: html! { section #progress { p { "This harden was rolled back." } } },
            polled: false,
        },
    }
}

async fn waiting(app: &App, view: &View, state: &HardenState, status: &HardenStatus) -> Live {
    let change = decide::change_of(state);
    let request = PlanRequest {
        limit: Some(1000),
        ..PlanRequest::of_directives(&change, None)
    };
    let plan = match harden::plan(app, request).await {
        Ok(plan) => plan,
        Err(error) => {
            return Live {
                markup: html! { section #progress data-poll="/tls/harden/progress" { (layout::refusal(error.code, &error.message)) } },
                polled: true,
            }
        }
    };
    let moved = state.moved.len();
    let acknowledged = status.acknowledged.len();
    let awaited = decide::waiting_for(&plan, false);
    if let Some(stop) = decide::reverted(&plan) {
        return Live {
            markup: html! {
                section #progress {
                    div.refusal role="alert" #harden-reverted {
                        strong { "The wait cannot finish: " } (stop)
                        ". TLS was not touched. Fix its path (or move it elsewhere), or undo the moves below."
                    }
                }
            },
            polled: false,
        };
    }
    let markup = html! {
        @if awaited.count > 0 {
            section #progress data-poll="/tls/harden/progress" aria-live="polite" {
                h2 { "Waiting for the moved agents" }
                p #harden-waiting {
                    label for="acknowledged" { "Acknowledged: " (acknowledged) " of " (moved) }
                    progress #acknowledged value=(acknowledged) max=(moved.max(1)) { (acknowledged) " of " (moved) }
                }
                p { "Still pending: " strong #pending-count { (awaited.count) } " agent(s). Each acknowledges at its
                    next check-in; the page follows by itself." }
                @if !plan.impact.cut_off.is_empty() {
                    (tls::agents_table("pending-cut-off", "Pending: the change would still cut them off", &plan.impact.cut_off))
                }
                @if !plan.impact.at_risk.is_empty() {
                    (tls::agents_table("pending-at-risk", "Pending: at risk until they check in", &plan.impact.at_risk))
                }
                @if decide::restage(&plan) && view.may_change() {
                    form method="post" action="/tls/harden/stage" #restage-form {
                        (view.csrf_field())
                        (change_fields(&change))
                        @if let Some(group) = &state.legacy_group { input type="hidden" name="legacy_group" value=(group); }
                        p { "Agents that enrolled since the staging would be cut off too. "
                            button type="submit" #restage { "Stage them as well" } }
                    }
                }
            }
        } @else {
            section #progress aria-live="polite" {
                p.notice role="status" #all-acknowledged {
                    "All " (moved) " moved agent(s) have acknowledged their new settings: nobody would lose
                    their last path. TLS has not been touched yet."
                }
                @if view.may_change() {
                    form method="post" action="/tls/harden/apply" #apply-form {
                        (view.csrf_field())
                        button type="submit" #harden-apply { "Apply " (plan.change) " and reload" }
                    }
                }
            }
        }
    };
    Live {
        markup,
        polled: awaited.count > 0,
    }
}

async fn watched(app: &App, state: &HardenState) -> Live {
    let silent = match silent(app, state).await {
        Ok(silent) => silent,
        Err(error) => {
            return Live {
                markup: html! { section #progress { (layout::refusal(error.code, &error.message)) } },
                polled: false,
            }
        }
    };
    let live = watching(state) && !silent.is_empty();
    let markup = html! {
        section #progress data-poll=[live.then_some("/tls/harden/progress")] aria-live="polite" {
            h2 { "Since the change" }
            @if silent.is_empty() {
                p.notice role="status" #all-back {
                    "Done: every agent that was online has checked in since the change."
                }
            } @else {
                p #silent-count { (silent.len()) " agent(s) have not checked in since the change"
                    @if live { " (watching)" } "." }
                (tls::agents_table("silent", "Not heard from since the change", &silent))
            }
        }
    };
    Live {
        markup,
        polled: live,
    }
}

/// `POST /tls/harden/stage`: the conf edit checked on this server's files first (nothing
/// moves for an edit that would not load), then staged. To the wizard's wait.
pub async fn stage(app: &App, view: &View, form: &Form) -> HttpResponse {
    let Some(change) = change_of_form(form) else {
        return super::refused(
            view,
            TITLE,
            &ApiError::bad_request("protocol: the change to make is missing"),
        );
    };
    match server::servers(app).await {
        Ok(servers) => {
            if let Some(reason) = site_refusal(&servers.servers) {
                return super::refused(view, TITLE, &ApiError::conflict("site", reason));
            }
        }
        Err(error) => return super::refused(view, TITLE, &error),
    }
    let check = ApplyRequest {
        dry_run: Some(true),
        accept_cut_off: Some(true),
        accept_risk: Some(true),
        ..ApplyRequest::of_directives(&change, None)
    };
    if let Err(error) = harden::apply(app, &view.caller, check).await {
        return super::refused(view, TITLE, &error);
    }
    let request = StageRequest {
        legacy_group: form.text("legacy_group"),
        ..StageRequest::of_directives(&change, None)
    };
    match harden::stage(app, &view.caller, request).await {
        Ok(_) => respond::redirect("/tls/harden", &[]),
        Err(error) => super::refused(view, TITLE, &error),
    }
}

/// `POST /tls/harden/apply`: the staged harden applied, guarded again by the server. To the
/// wizard's verify.
pub async fn apply(app: &App, view: &View) -> HttpResponse {
    let state = match harden::status(app).await {
        Ok(HardenStatus {
            state: Some(state), ..
        }) if state.step == Step::Staged => state,
        Ok(_) => {
            return super::refused(
                view,
                TITLE,
                &ApiError::conflict(
                    "not_staged",
                    "no staged harden to apply (it was applied or undone meanwhile)",
                ),
            )
        }
        Err(error) => return super::refused(view, TITLE, &error),
    };
    let request = ApplyRequest::of_directives(&decide::change_of(&state), None);
    match harden::apply(app, &view.caller, request).await {
        Ok(_) => respond::redirect("/tls/harden", &[]),
        Err(error) => respond::page(
            error.status,
            layout::shell(
                Some(view),
                TITLE,
                html! {
                    (super::guard_refusal(&error, "Agents the change would cut off, and why"))
                    p { a href="/tls/harden" { "Back to the harden" } }
                },
            ),
        ),
    }
}

/// `POST /tls/rollback`: the files put back (and the moved agents, when asked), after the same
/// plan.
pub async fn rollback(app: &App, view: &View, form: &Form) -> HttpResponse {
    let request = RollbackRequest {
        move_back: form.get("move_back") == Some("true"),
        dry_run: false,
        accept_cut_off: false,
    };
    let (status, body) = match harden::rollback(app, &view.caller, request).await {
        Ok(done) => (
            StatusCode::OK,
            html! {
                p.notice role="status" #rolled-back { "Rolled back." }
                ul #rollback-steps {
                    @for line in done.steps.unwrap_or_default() { li { (line) } }
                }
                p { a href="/tls/harden" { "Back to the harden" } }
            },
        ),
        Err(error) => (
            error.status,
            html! {
                (super::guard_refusal(&error, "Agents the rollback would cut off, and why"))
                p { a href="/tls/harden" { "Back to the harden" } }
            },
        ),
    };
    respond::page(status, layout::shell(Some(view), "Roll back TLS", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: Step) -> HardenState {
        HardenState {
            step,
            ..HardenState::default()
        }
    }

    #[test]
    fn the_wizard_is_where_the_recorded_harden_is() {
        let cases = [
            (None, false, Phase::Propose),
            (None, true, Phase::Review),
            (Some(Step::Staged), false, Phase::Wait),
            // A staged harden is finished or undone before another is proposed.
            (Some(Step::Staged), true, Phase::Wait),
            (Some(Step::Applied), false, Phase::Done),
            (Some(Step::Applied), true, Phase::Review),
            (Some(Step::RolledBack), false, Phase::Propose),
            (Some(Step::RolledBack), true, Phase::Review),
        ];
        for (step, proposing, expected) in cases {
            let recorded = step.map(state);
            assert_eq!(
                phase(recorded.as_ref(), proposing),
                expected,
                "{step:?} {proposing}"
            );
        }
    }

    fn server(name: &str, this: bool) -> SiteServer {
        SiteServer {
            name: name.into(),
            this,
            alive: true,
            version: String::new(),
            started: String::new(),
            last_heartbeat: String::new(),
            listeners: Vec::new(),
        }
    }

    #[test]
    fn a_server_of_a_site_is_not_hardened_alone() {
        assert_eq!(site_refusal(&[]), None);
        assert_eq!(site_refusal(&[server("a:8445", true)]), None);
        let refusal = site_refusal(&[server("a:8445", true), server("b:8445", false)]).unwrap();
        assert!(refusal.contains("1 other server(s) (b:8445)"), "{refusal}");
        assert!(refusal.contains("ward tls harden"), "{refusal}");
    }

    #[test]
    fn a_harden_is_described_in_apaches_words() {
        let mut recorded = state(Step::Staged);
        recorded.protocol = "-all +TLSv1.3".into();
        recorded.listener = "clients".into();
        assert_eq!(described(&recorded), "SSLProtocol -all +TLSv1.3 on clients");
        recorded.cipher_suite_tls13 = Some("TLS_AES_256_GCM_SHA384".into());
        assert_eq!(
            described(&recorded),
            "SSLProtocol -all +TLSv1.3, SSLCipherSuite TLSv1.3 TLS_AES_256_GCM_SHA384 on clients"
        );
    }

    #[test]
    fn a_change_goes_through_the_form_and_back() {
        let change = TlsChange {
            protocol: Some("-all +TLSv1.2".into()),
            cipher_suite: Some("ECDHE+AESGCM".into()),
            listener: Some(ward_api::tls::ListenerChoice::Clients),
            ..TlsChange::default()
        };
        let markup = change_fields(&change).into_string();
        let mut fields = Vec::new();
        for input in markup.split("<input").skip(1) {
            let attribute = |name: &str| {
                let start = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                input[start..][..input[start..].find('"').unwrap()].to_string()
            };
            fields.push((attribute("name"), attribute("value")));
        }
        let form = Form(fields);
        let back = change_of_form(&form).unwrap();
        assert_eq!(back.protocol, change.protocol);
        assert_eq!(back.cipher_suite, change.cipher_suite);
        assert_eq!(back.listener, change.listener);
    }
}
