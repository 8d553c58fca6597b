//! The page shell every console page shares: head (stylesheet, script, no inline code), a skip
//! link, the navigation with the current page marked, who is logged in and the logout form;
//! and the small pieces pages share (times, the CSRF field, a refusal).

use maud::{html, Markup, DOCTYPE};
use ward_server::auth::{Caller, Role};

use crate::assets;

/// Who is looking, and what every form they are shown must carry.
pub struct View {
    pub caller: Caller,
    /// The session's CSRF token.
    pub csrf: String,
    /// The path asked for (the navigation marks its section).
    pub path: String,
}

impl View {
    /// Admins change; auditors only look (no write control is rendered for them).
    pub fn may_change(&self) -> bool {
        self.caller.role == Role::Admin
    }

    /// The hidden field every form of this session carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

/// The sections: the path, the label, and whether auditors are shown it.
const SECTIONS: [(&str, &str, bool); 7] = [
    ("/", "Dashboard", true),
    ("/agents", "Agents", true),
    ("/groups", "Groups", true),
    ("/serverlists", "Server lists", true),
    ("/tls", "TLS", true),
    ("/audit", "Audit log", true),
    ("/accounts", "Accounts", false),
];

fn current(path: &str, section: &str) -> bool {
    if section == "/" {
        path == "/"
    } else {
        path == section || path.starts_with(&format!("{section}/"))
    }
}

/// A whole page.
pub fn shell(view: Option<&View>, title: &str, body: Markup) -> Markup {
    document(view, title, body, None)
}

/// A whole page that, when `refresh` is given and the script does not run, reloads itself
/// every that many seconds (a page that follows something under way).
pub fn document(view: Option<&View>, title: &str, body: Markup, refresh: Option<u32>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ward" }
                link rel="stylesheet" href=(assets::css_url());
                script src=(assets::js_url()) defer {}
                @if let Some(seconds) = refresh {
                    noscript { meta http-equiv="refresh" content=(seconds); }
                }
            }
            body {
                a.skip href="#main" { "Skip to content" }
                @if let Some(view) = view {
                    header.top {
                        span.brand { "ward" }
                        nav aria-label="Sections" {
                            ul {
                                @for (href, label, _) in SECTIONS.iter().filter(|(_, _, all)| *all || view.may_change()) {
                                    li {
                                        @if current(&view.path, href) {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span #who { (view.caller.name) " (" (view.caller.role.name()) ")" }
                            form method="post" action="/logout" {
                                (view.csrf_field())
                                button type="submit" #logout { "Log out" }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// An RFC 3339 UTC time: shown in the browser's zone by the script, UTC on hover.
pub fn time(rfc3339: Option<&str>) -> Markup {
    match rfc3339 {
        Some(at) => html! { time datetime=(at) title=(format!("{at} (UTC)")) { (at) } },
        None => html! { span.muted { "never" } },
    }
}

/// A refusal from an operation, with its code.
pub fn refusal(code: &str, message: &str) -> Markup {
    html! {
        div.refusal role="alert" {
            strong { "Refused (" (code) "): " }
            (message)
        }
    }
}
