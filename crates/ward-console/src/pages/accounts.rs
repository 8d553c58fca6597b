//! Accounts, for admins only (an auditor is refused the page as well as its forms): who may
//! log in and with which role, a new account, a new password, disabling and enabling, ending
//! an account's sessions, deleting. Each through `operations::accounts`, as `ward account`
//! and the admin API do; each ends the sessions the store says it ends, at once.

use hyper::StatusCode;
use maud::{html, Markup};
use ward_api::fleet::{NewAccount, NewPassword, Role};
use ward_server::api::{ApiError, HttpResponse};
use ward_server::operations::accounts;
use ward_server::state::App;

use crate::layout::{self, View};
use crate::respond::{self, Form};

const TITLE: &str = "Accounts";

/// What an account form asks for, by the button sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Create {
        name: String,
        role: Role,
        password: String,
    },
    Password {
        name: String,
        password: String,
    },
    Disable(String),
    Enable(String),
    Revoke(String),
    Delete(String),
}

/// The action a posted form asks for, or why it asks for none.
pub fn action(form: &Form) -> Result<Action, ApiError> {
    let name = || {
        form.text("name")
            .ok_or_else(|| ApiError::bad_request("name: the account's name is missing"))
    };
    let password = || form.get("password").unwrap_or("").to_string();
    Ok(match form.get("action") {
        Some("create") => Action::Create {
            name: name()?,
            role: match form.get("role") {
                Some("admin") => Role::Admin,
                Some("auditor") => Role::Auditor,
                _ => return Err(ApiError::bad_request("role: admin or auditor")),
            },
            password: password(),
        },
        Some("password") => Action::Password {
            name: name()?,
            password: password(),
        },
        Some("disable") => Action::Disable(name()?),
        Some("enable") => Action::Enable(name()?),
        Some("revoke") => Action::Revoke(name()?),
        Some("delete") => Action::Delete(name()?),
        _ => {
            return Err(ApiError::bad_request(
                "action: no such change of an account",
            ))
        }
    })
}

fn admins_only(view: &View) -> Option<HttpResponse> {
    (!view.may_change()).then(|| {
        super::refused(
            view,
            TITLE,
            &ApiError::client(
                StatusCode::FORBIDDEN,
                "forbidden",
                "accounts are for admins only",
            ),
        )
    })
}

fn row_action(view: &View, name: &str, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action="/accounts" {
            (view.csrf_field())
            input type="hidden" name="name" value=(name);
            input type="hidden" name="action" value=(action);
            button.secondary type="submit" id=(format!("{action}-{name}")) { (label) }
        }
    }
}

/// `GET /accounts` (and the page again after a change, with the form sent and its outcome; a
/// refusal of the new-account form goes next to that form's field).
pub async fn page(
    app: &App,
    view: &View,
    outcome: Option<(&Form, Result<String, ApiError>)>,
) -> HttpResponse {
    if let Some(refusal) = admins_only(view) {
        return refusal;
    }
    let listed = match accounts::list(app).await {
        Ok(listed) => listed,
        Err(error) => return super::refused(view, TITLE, &error),
    };
    let super::Shown {
        form,
        result,
        status,
        field,
    } = super::shown(&outcome, &["name", "password"]);
    let field = field.filter(|_| form.and_then(|f| f.get("action")) == Some("create"));
    let error_for = |name: &str| -> Markup {
        html! {
            @if let (Some(Err(error)), Some(field)) = (result, field) {
                @if field == name { span.field-error id=(format!("account-{name}-error")) role="alert" { (error.message) } }
            }
        }
    };
    let body = html! {
        @match result {
            Some(Ok(done)) => p.notice role="status" #account-done { (done) },
            Some(Err(error)) if field.is_none() => (layout::refusal(error.code, &error.message)),
            _ => {}
        }
        table #accounts {
            caption { "Who may log in (the local admin token is not an account)" }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "State" } th scope="col" { "Change" } } }
            tbody {
                @for account in &listed {
                    tr {
                        td { (account.name) }
                        td { (format!("{:?}", account.role).to_lowercase()) }
                        td { @if account.disabled { span.badge.off { "disabled" } } @else { span.badge.on { "enabled" } } }
                        td.actions {
                            @if account.disabled {
                                (row_action(view, &account.name, "enable", "Enable"))
                            } @else {
                                (row_action(view, &account.name, "disable", "Disable"))
                            }
                            (row_action(view, &account.name, "revoke", "End its sessions"))
                            (row_action(view, &account.name, "delete", "Delete"))
                        }
                    }
                }
            }
        }
        div.columns {
            section aria-labelledby="new-account-heading" {
                h2 #new-account-heading { "New account" }
                form.stacked method="post" action="/accounts" #new-account {
                    (view.csrf_field())
                    input type="hidden" name="action" value="create";
                    label for="account-name" { "Name"
                        input #account-name type="text" name="name" required autocomplete="off" aria-describedby="account-name-error";
                        (error_for("name"))
                    }
                    label for="account-role" { "Role"
                        select #account-role name="role" {
                            option value="auditor" { "auditor (reads, never changes)" }
                            option value="admin" { "admin" }
                        }
                    }
                    label for="account-password" { "Password"
                        input #account-password type="password" name="password" required autocomplete="new-password" aria-describedby="account-password-error";
                        (error_for("password"))
                    }
                    button type="submit" #create-account { "Create account" }
                }
            }
            section aria-labelledby="password-heading" {
                h2 #password-heading { "New password" }
                form.stacked method="post" action="/accounts" #set-password {
                    (view.csrf_field())
                    input type="hidden" name="action" value="password";
                    label for="password-name" { "Account"
                        select #password-name name="name" {
                            @for account in &listed { option value=(account.name) { (account.name) } }
                        }
                    }
                    label for="new-password" { "New password"
                        input #new-password type="password" name="password" required autocomplete="new-password";
                    }
                    button type="submit" #change-password { "Set password (ends its sessions)" }
                }
            }
        }
    };
    respond::page(status, layout::shell(Some(view), TITLE, body))
}

/// `POST /accounts`.
pub async fn change(app: &App, view: &View, form: &Form) -> HttpResponse {
    if let Some(refusal) = admins_only(view) {
        return refusal;
    }
    let caller = &view.caller;
    let outcome = match action(form) {
        Err(error) => Err(error),
        Ok(Action::Create {
            name,
            role,
            password,
        }) => accounts::create(
            app,
            caller,
            NewAccount {
                name: name.clone(),
                password,
                role,
            },
        )
        .await
        .map(|_| format!("Created {name}.")),
        Ok(Action::Password { name, password }) => {
            accounts::set_password(app, caller, name.clone(), NewPassword { password })
                .await
                .map(|_| format!("Set a new password for {name}; its sessions ended."))
        }
        Ok(Action::Disable(name)) => accounts::set_disabled(app, caller, name.clone(), true)
            .await
            .map(|_| format!("Disabled {name}; its sessions ended.")),
        Ok(Action::Enable(name)) => accounts::set_disabled(app, caller, name.clone(), false)
            .await
            .map(|_| format!("Enabled {name}.")),
        Ok(Action::Revoke(name)) => accounts::revoke_sessions(app, caller, name.clone())
            .await
            .map(|_| format!("Ended every session of {name}.")),
        Ok(Action::Delete(name)) => accounts::delete(app, caller, name.clone())
            .await
            .map(|_| format!("Deleted {name}.")),
    };
    page(app, view, Some((form, outcome))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> Form {
        Form::parse(text.as_bytes())
    }

    #[test]
    fn each_button_asks_for_its_change() {
        let cases = [
            (
                "action=create&name=bob&role=auditor&password=pw",
                Ok(Action::Create {
                    name: "bob".into(),
                    role: Role::Auditor,
                    password: "pw".into(),
                }),
            ),
            (
                "action=password&name=bob&password=x",
                Ok(Action::Password {
                    name: "bob".into(),
                    password: "x".into(),
                }),
            ),
            ("action=disable&name=bob", Ok(Action::Disable("bob".into()))),
            ("action=enable&name=bob", Ok(Action::Enable("bob".into()))),
            ("action=revoke&name=bob", Ok(Action::Revoke("bob".into()))),
            ("action=delete&name=bob", Ok(Action::Delete("bob".into()))),
            ("action=delete", Err("name")),
            ("action=create&name=bob&role=root", Err("role")),
            ("action=explode&name=bob", Err("action")),
        ];
        for (text, expected) in cases {
            let got = action(&form(text))
                .map_err(|e| e.message.split(':').next().unwrap_or_default().to_string());
            assert_eq!(got, expected.map_err(str::to_string), "{text}");
        }
    }
}
