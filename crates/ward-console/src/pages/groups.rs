//! Groups: the tree with each group's own settings and its effective ones (and the group each
//! comes from), a new group, and one group's page: rename it, give it its own settings (server
//! list, interval, randomisation, mode, policy document) or inherit them again, move it under
//! another group. Every change goes through the guarded operation, so one that would cut agents
//! off is refused with the agents it names; a refusal is shown next to the field it concerns.

use std::collections::BTreeMap;

use hyper::StatusCode;
use maud::{html, Markup};
use ward_api::fleet::{Group, GroupPatch, Mode, MoveGroup, NewGroup, Setting};
use ward_server::api::{ApiError, HttpResponse};
use ward_server::operations::groups;
use ward_server::state::App;

use crate::layout::{self, View};
use crate::respond::{self, Form};

/// A refusal kept for the field it concerns (`name` or `parent`), or for the form.
struct FieldError {
    field: &'static str,
    code: &'static str,
    message: String,
}

fn field_error(error: &ApiError) -> FieldError {
    let field = super::field_named(&error.message, &["name", "parent"])
        .unwrap_or(if error.code == "conflict" { "name" } else { "" });
    FieldError {
        field,
        code: error.code,
        message: error.message.clone(),
    }
}

fn tree(children: &BTreeMap<Option<String>, Vec<&Group>>, parent: Option<String>) -> Markup {
    html! {
        @if let Some(groups) = children.get(&parent) {
            ul {
                @for group in groups {
                    li {
                        details open {
                            summary { strong { (group.name) } " " span.muted { code { (group.path.as_deref().unwrap_or("")) } }
                                " " a href=(format!("/groups/{}", group.id)) aria-label=(format!("Open {}", group.path.as_deref().unwrap_or(&group.name))) { "open" } }
                            (settings(group))
                        }
                        (tree(children, group.path.clone()))
                    }
                }
            }
        }
    }
}

fn settings(group: &Group) -> Markup {
    html! {
        @if let Some(effective) = &group.effective {
            @let from = &effective.inherited_from;
            table.settings {
                thead { tr { th scope="col" { "Setting" } th scope="col" { "Effective" } th scope="col" { "Set here" } th scope="col" { "From" } } }
                tbody {
                    tr { td { "Server list" } td { code { (effective.server_list) } } td { (group.own.server_list.as_deref().unwrap_or("—")) } td { (from.server_list.as_deref().unwrap_or("")) } }
                    tr { td { "Interval" } td { (effective.interval) } td { (group.own.interval.as_deref().unwrap_or("—")) } td { (from.interval.as_deref().unwrap_or("")) } }
                    tr { td { "Randomize" } td { (effective.randomize) } td { (group.own.randomize.as_deref().unwrap_or("—")) } td { (from.randomize.as_deref().unwrap_or("")) } }
                    tr { td { "Mode" } td { (format!("{:?}", effective.mode).to_lowercase()) } td { (group.own.mode.map(|m| format!("{m:?}").to_lowercase()).unwrap_or_else(|| "—".into())) } td { (from.mode.as_deref().unwrap_or("")) } }
                    tr { td { "Policy" } td { code { (effective.policy) } } td { (if group.own.policy.is_some() { "yes" } else { "—" }) } td { (from.policy.as_deref().unwrap_or("")) } }
                }
            }
        }
    }
}

/// `GET /groups` (and the page again after a refused create, with its error and the values).
pub async fn list(
    app: &App,
    view: &View,
    refused: Option<(&Form, FieldErrorView)>,
) -> HttpResponse {
    let groups = match groups::list(app).await {
        Ok(groups) => groups,
        Err(error) => return super::refused(view, "Groups", &error),
    };
    let mut children: BTreeMap<Option<String>, Vec<&Group>> = BTreeMap::new();
    for group in &groups {
        children
            .entry(group.parent.clone())
            .or_default()
            .push(group);
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut paths: Vec<&str> = groups.iter().filter_map(|g| g.path.as_deref()).collect();
    paths.sort();
    let (form, error) = match &refused {
        Some((form, error)) => (Some(*form), Some(&error.0)),
        None => (None, None),
    };
    let error_for = |field: &str| -> Markup {
        html! {
            @if let Some(error) = error {
                @if error.field == field {
                    span.field-error id=(format!("{field}-error")) role="alert" { (error.message) }
                }
            }
        }
    };
    let status = error.map_or(StatusCode::OK, |_| StatusCode::UNPROCESSABLE_ENTITY);
    let body = html! {
        @if let Some(error) = error {
            @if error.field.is_empty() { (layout::refusal(error.code, &error.message)) }
        }
        @if view.may_change() {
            section aria-labelledby="new-group-heading" {
                h2 #new-group-heading { "New group" }
                form.stacked method="post" action="/groups" #new-group {
                    (view.csrf_field())
                    label for="group-name" { "Name"
                        input #group-name type="text" name="name" required aria-describedby="name-error"
                            value=(form.and_then(|f| f.get("name")).unwrap_or(""));
                        (error_for("name"))
                    }
                    label for="group-parent" { "Under"
                        select #group-parent name="parent" aria-describedby="parent-error" {
                            @for path in &paths {
                                option value=(path) selected[form.and_then(|f| f.get("parent")) == Some(*path)] { (path) }
                            }
                        }
                        (error_for("parent"))
                    }
                    button type="submit" #create-group { "Create group" }
                }
            }
        }
        section.tree aria-labelledby="tree-heading" #group-tree {
            h2 #tree-heading { "The tree" }
            (tree(&children, None))
        }
    };
    respond::page(status, layout::shell(Some(view), "Groups", body))
}

/// A refused create's error, for [`list`].
pub struct FieldErrorView(FieldError);

/// `POST /groups`.
pub async fn create(app: &App, view: &View, form: &Form) -> HttpResponse {
    let request = NewGroup {
        name: form.text("name").unwrap_or_default(),
        parent: form.text("parent"),
    };
    match groups::create(app, &view.caller, request).await {
        Ok(group) => {
            let path = group.path.unwrap_or(group.name);
            respond::redirect(&format!("/groups?created={}", respond::encode(&path)), &[])
        }
        Err(error) => list(app, view, Some((form, FieldErrorView(field_error(&error))))).await,
    }
}

/// The settings a group's form edits: the form's field, the setting, and the group's own value
/// as the form shows it.
fn own_fields(group: &Group) -> [(&'static str, Setting, String); 5] {
    let own = &group.own;
    [
        (
            "server_list",
            Setting::ServerList,
            own.server_list.clone().unwrap_or_default(),
        ),
        (
            "interval",
            Setting::Interval,
            own.interval.clone().unwrap_or_default(),
        ),
        (
            "randomize",
            Setting::Randomize,
            own.randomize.clone().unwrap_or_default(),
        ),
        (
            "mode",
            Setting::Mode,
            own.mode
                .map(|m| format!("{m:?}").to_lowercase())
                .unwrap_or_default(),
        ),
        (
            "policy",
            Setting::Policy,
            own.policy
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        ),
    ]
}

/// What a group's form asks to change, against the group as it is: a field changed to a value
/// sets it, a field emptied inherits it again, a field left as it was is not sent. `None`
/// when nothing changed.
pub fn patch_of(group: &Group, form: &Form) -> Result<Option<GroupPatch>, ApiError> {
    let mut patch = GroupPatch {
        accept_cut_off: form.get("accept_cut_off") == Some("true"),
        ..GroupPatch::default()
    };
    let mut changed = false;
    if let Some(name) = form.text("name").filter(|name| *name != group.name) {
        patch.name = Some(name);
        changed = true;
    }
    let mut inherit = Vec::new();
    for (field, setting, own) in own_fields(group) {
        let Some(sent) = form.get(field).map(str::trim) else {
            continue;
        };
        if sent == own {
            continue;
        }
        changed = true;
        if sent.is_empty() {
            inherit.push(setting);
            continue;
        }
        match setting {
            Setting::ServerList => patch.server_list = Some(sent.to_string()),
            Setting::Interval => patch.interval = Some(sent.to_string()),
            Setting::Randomize => patch.randomize = Some(sent.to_string()),
            Setting::Mode => {
                patch.mode = Some(match sent {
                    "pull" => Mode::Pull,
                    "push" => Mode::Push,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "mode: '{other}' is neither pull nor push"
                        )))
                    }
                })
            }
            Setting::Policy => {
                let value: serde_json::Value = serde_json::from_str(sent).map_err(|e| {
                    ApiError::bad_request(format!("policy: not a JSON document: {e}"))
                })?;
                let serde_json::Value::Object(map) = value else {
                    return Err(ApiError::bad_request(
                        "policy: a JSON object ({\"key\": value, ...})",
                    ));
                };
                patch.policy = Some(map);
            }
        }
    }
    if !inherit.is_empty() {
        patch.inherit = Some(inherit);
    }
    Ok(changed.then_some(patch))
}

/// The fields a refusal is shown next to (any other refusal goes above the form).
const GROUP_FIELDS: [&str; 7] = [
    "name",
    "server_list",
    "interval",
    "randomize",
    "mode",
    "policy",
    "parent",
];

/// `GET /groups/{id}` (and the page again after a change, with its outcome and the form).
pub async fn edit(
    app: &App,
    view: &View,
    id: &str,
    outcome: Option<(&Form, Result<String, ApiError>)>,
) -> HttpResponse {
    let group = match groups::get(app, id.to_string()).await {
        Ok(group) => group,
        Err(error) => return super::refused(view, "Group", &error),
    };
    let lists = ward_server::operations::serverlists::list(app)
        .await
        .map(|lists| lists.into_iter().map(|l| l.name).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut paths: Vec<String> = groups::list(app)
        .await
        .map(|groups| groups.into_iter().filter_map(|g| g.path).collect())
        .unwrap_or_default();
    paths.sort();
    let path = group.path.clone().unwrap_or_else(|| group.name.clone());
    let super::Shown {
        form,
        result,
        status,
        field,
    } = super::shown(&outcome, &GROUP_FIELDS);
    let own = own_fields(&group);
    let value = |name: &str| -> String {
        form.and_then(|f| f.get(name))
            .map(str::to_string)
            .or_else(|| {
                own.iter()
                    .find(|(field, _, _)| *field == name)
                    .map(|(_, _, value)| value.clone())
            })
            .unwrap_or_default()
    };
    let error_for = |name: &str| -> Markup {
        html! {
            @if let (Some(Err(error)), Some(field)) = (result, field) {
                @if field == name { span.field-error id=(format!("{name}-error")) role="alert" { (error.message) } }
            }
        }
    };
    let root = group.parent.is_none();
    let may = view.may_change();
    let body = html! {
        p { a href="/groups" { "← The tree" } }
        @match result {
            Some(Ok(done)) => p.notice role="status" #group-done { (done) },
            Some(Err(error)) if field.is_none() => (super::guard_refusal(error, "Agents the change would cut off, and why")),
            _ => {}
        }
        h2 { "Effective settings" }
        (settings(&group))
        @if may {
            h2 { "Change" }
            p.muted { "A field left empty is inherited from the parent group"
                @if root { " (the root group inherits nothing: each must be set)" } "." }
            form.stacked method="post" action=(format!("/groups/{}", group.id)) #group-form {
                (view.csrf_field())
                label for="name" { "Name"
                    input #name type="text" name="name" required value=(form.and_then(|f| f.get("name")).unwrap_or(&group.name)) aria-describedby="name-error";
                    (error_for("name"))
                }
                label for="server_list" { "Server list"
                    select #server_list name="server_list" aria-describedby="server_list-error" {
                        option value="" { "(inherit)" }
                        @for list in &lists { option value=(list) selected[value("server_list") == *list] { (list) } }
                    }
                    (error_for("server_list"))
                }
                label for="interval" { "Check-in interval"
                    input #interval type="text" name="interval" value=(value("interval")) placeholder="(inherit), e.g. 5m" aria-describedby="interval-error";
                    (error_for("interval"))
                }
                label for="randomize" { "Randomisation"
                    input #randomize type="text" name="randomize" value=(value("randomize")) placeholder="(inherit), e.g. 30s" aria-describedby="randomize-error";
                    (error_for("randomize"))
                }
                label for="mode" { "Mode"
                    select #mode name="mode" aria-describedby="mode-error" {
                        option value="" { "(inherit)" }
                        option value="pull" selected[value("mode") == "pull"] { "pull (heartbeat)" }
                        option value="push" selected[value("mode") == "push"] { "push (held connection)" }
                    }
                    (error_for("mode"))
                }
                label for="policy" { "Policy document (JSON)"
                    textarea #policy name="policy" rows="4" placeholder="(inherit)" aria-describedby="policy-error" { (value("policy")) }
                    (error_for("policy"))
                }
                label.inline for="accept_cut_off" {
                    span { input #accept_cut_off type="checkbox" name="accept_cut_off" value="true";
                        " Change it even if agents would lose their last path (audited)" }
                }
                button type="submit" #save-group { "Save" }
            }
            @if !root {
                h2 { "Move" }
                form.stacked method="post" action=(format!("/groups/{}/move", group.id)) #move-group-form {
                    (view.csrf_field())
                    label for="parent" { "Under"
                        select #parent name="parent" aria-describedby="parent-error" {
                            @for candidate in paths.iter().filter(|p| **p != path && !p.starts_with(&format!("{path}/"))) {
                                option value=(candidate) selected[group.parent.as_deref() == Some(candidate.as_str())] { (candidate) }
                            }
                        }
                        (error_for("parent"))
                    }
                    button type="submit" #move-group { "Move" }
                }
            }
        }
    };
    respond::page(
        status,
        layout::shell(Some(view), &format!("Group {path}"), body),
    )
}

/// `POST /groups/{id}`: the form's changes, through the guarded operation.
pub async fn update(app: &App, view: &View, id: &str, form: &Form) -> HttpResponse {
    let group = match groups::get(app, id.to_string()).await {
        Ok(group) => group,
        Err(error) => return super::refused(view, "Group", &error),
    };
    let outcome = match patch_of(&group, form) {
        Ok(None) => Ok("Nothing changed.".to_string()),
        Ok(Some(patch)) => groups::update(app, &view.caller, id.to_string(), patch)
            .await
            .map(|saved| format!("Saved {}.", saved.path.unwrap_or(saved.name))),
        Err(error) => Err(error),
    };
    edit(app, view, id, Some((form, outcome))).await
}

/// `POST /groups/{id}/move`.
pub async fn move_to(app: &App, view: &View, id: &str, form: &Form) -> HttpResponse {
    let request = MoveGroup {
        parent: form.text("parent").unwrap_or_default(),
        accept_cut_off: form.get("accept_cut_off") == Some("true"),
    };
    let outcome = groups::move_group(app, &view.caller, id.to_string(), request)
        .await
        .map(|moved| format!("Moved to {}.", moved.path.unwrap_or(moved.name)));
    edit(app, view, id, Some((form, outcome))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_api::fleet::OwnSettings;

    fn group() -> Group {
        Group {
            id: 2,
            path: Some("My Company/Branch".into()),
            name: "Branch".into(),
            parent: Some("My Company".into()),
            own: OwnSettings {
                server_list: None,
                interval: Some("5m".into()),
                randomize: None,
                mode: Some(Mode::Pull),
                policy: None,
            },
            effective: None,
        }
    }

    fn patch(text: &str) -> Result<Option<GroupPatch>, String> {
        patch_of(&group(), &Form::parse(text.as_bytes())).map_err(|e| e.message)
    }

    #[test]
    fn only_what_changed_is_sent() {
        // As shown: nothing to do.
        assert_eq!(
            patch("name=Branch&interval=5m&mode=pull&server_list=&randomize=&policy="),
            Ok(None)
        );
        let renamed = patch("name=Office&interval=5m&mode=pull").unwrap().unwrap();
        assert_eq!(renamed.name.as_deref(), Some("Office"));
        assert_eq!(renamed.interval, None);
        // Emptied: inherited again. Set: sent.
        let changed =
            patch("name=Branch&interval=&mode=push&randomize=30s&server_list=Default-http")
                .unwrap()
                .unwrap();
        assert_eq!(changed.inherit, Some(vec![Setting::Interval]));
        assert_eq!(changed.mode, Some(Mode::Push));
        assert_eq!(changed.randomize.as_deref(), Some("30s"));
        assert_eq!(changed.server_list.as_deref(), Some("Default-http"));
        let policy = patch(r#"policy={"inventory":true}"#).unwrap().unwrap();
        assert_eq!(policy.policy.unwrap()["inventory"], true);
    }

    #[test]
    fn a_bad_value_is_refused_naming_its_field() {
        for (text, field) in [
            ("mode=sometimes", "mode:"),
            ("policy={oops", "policy:"),
            ("policy=[1,2]", "policy:"),
        ] {
            let refused = patch(text).unwrap_err();
            assert!(refused.starts_with(field), "{text}: {refused}");
        }
    }
}
