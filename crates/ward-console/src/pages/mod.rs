//! One module per section of the console. Each reads through `ward_server::operations` and
//! renders the typed answer; each change goes through the same operation the admin API calls.

use hyper::StatusCode;
use maud::{html, Markup};
use ward_server::api::{ApiError, HttpResponse};

use crate::layout::{self, View};
use crate::respond;

pub mod accounts;
pub mod agents;
pub mod audit;
pub mod dashboard;
pub mod groups;
pub mod harden;
pub mod login;
pub mod rotations;
pub mod serverlists;
#[cfg(test)]
mod test_agents;

/// TLS versions as ward names them, oldest first: the order every page sorts and charts by.
pub const TLS_VERSIONS: [&str; 5] = ["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];

/// The form field an operation's refusal concerns, of `fields`: the one its message starts
/// with (`name: ...`), else the first it quotes (`'name'`); `None` when it names none.
pub fn field_named(message: &str, fields: &[&'static str]) -> Option<&'static str> {
    let named = |field: &&'static str| message.starts_with(&format!("{field}:"));
    let quoted = |field: &&'static str| message.contains(&format!("'{field}'"));
    let fields = || fields.iter().copied();
    fields().find(named).or_else(|| fields().find(quoted))
}

/// A guard's refusal: its sentence, and the agents it names as cut off (`caption` says by
/// what), each with why.
pub fn guard_refusal(error: &ApiError, caption: &str) -> Markup {
    let plan = error.detail.as_ref().and_then(|d| d.plan.as_ref());
    html! {
        (layout::refusal(error.code, &error.message))
        @if let Some(plan) = plan.filter(|p| !p.cut_off.is_empty()) {
            table #cut-off {
                caption { (caption) }
                thead { tr { th scope="col" { "Agent" } th scope="col" { "Name" } th scope="col" { "Why" } } }
                tbody {
                    @for line in &plan.cut_off {
                        tr {
                            td { a href=(format!("/agents/{}", respond::encode(&line.id))) { code { (line.id) } } }
                            td { (line.hostname.as_deref().unwrap_or("")) }
                            td { (line.reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

/// A change's outcome, as the page shows it again: the form sent, what came of it, the status
/// to answer with, and the field its refusal names (of `fields`).
pub struct Shown<'a> {
    pub form: Option<&'a respond::Form>,
    pub result: Option<&'a Result<String, ApiError>>,
    pub status: StatusCode,
    pub field: Option<&'static str>,
}

/// What a page shows of `outcome` (`None`: the page asked for itself).
pub fn shown<'a>(
    outcome: &'a Option<(&'a respond::Form, Result<String, ApiError>)>,
    fields: &[&'static str],
) -> Shown<'a> {
    let (form, result) = match outcome {
        Some((form, result)) => (Some(*form), Some(result)),
        None => (None, None),
    };
    let (status, field) = match result {
        Some(Err(error)) => (error.status, field_named(&error.message, fields)),
        _ => (StatusCode::OK, None),
    };
    Shown {
        form,
        result,
        status,
        field,
    }
}

/// A page that shows only an operation's refusal, with the refusal's status.
pub fn refused(view: &View, title: &str, error: &ApiError) -> HttpResponse {
    let status = if error.status.is_client_error() || error.status.is_server_error() {
        error.status
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    respond::page(
        status,
        layout::shell(
            Some(view),
            title,
            html! { (layout::refusal(error.code, &error.message)) },
        ),
    )
}
pub mod tls;

#[cfg(test)]
mod tests {
    #[test]
    fn a_refusal_is_placed_by_the_field_it_names_first() {
        let fields = ["name", "parent"];
        let cases = [
            ("name: too long", Some("name")),
            ("parent: no group 'x'", Some("parent")),
            // Else the first of the fields (in their order) it quotes.
            ("no group 'parent' here, see 'name'", Some("name")),
            // A message that starts with a field is about it, whatever else it quotes.
            ("parent: no group 'name' under it", Some("parent")),
            ("nothing named", None),
        ];
        for (message, expected) in cases {
            assert_eq!(super::field_named(message, &fields), expected, "{message}");
        }
    }
}
