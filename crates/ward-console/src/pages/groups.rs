//! Groups: the tree with each group's own settings and its effective ones (and the group each
//! comes from), and a new group (its refusal shown next to the field it concerns).

use std::collections::BTreeMap;

use hyper::StatusCode;
use maud::{html, Markup};
use ward_api::fleet::{Group, NewGroup};
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
                            summary { strong { (group.name) } " " span.muted { code { (group.path.as_deref().unwrap_or("")) } } }
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
