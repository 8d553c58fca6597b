use hyper::header::HeaderValue;

use super::*;

#[test]
fn cookies_are_found_by_exact_name() {
    let mut headers = HeaderMap::new();
    headers.append(
        header::COOKIE,
        HeaderValue::from_static("a=1; __Host-ward-session=abc; x__Host-ward-login=no"),
    );
    headers.append(
        header::COOKIE,
        HeaderValue::from_static("__Host-ward-login=yes"),
    );
    let cases = [
        (SESSION_COOKIE, Some("abc")),
        (LOGIN_COOKIE, Some("yes")),
        ("a", Some("1")),
        ("b", None),
    ];
    for (name, expected) in cases {
        assert_eq!(cookie(&headers, name).as_deref(), expected, "{name}");
    }
}

#[test]
fn a_csrf_token_belongs_to_its_session() {
    let token = csrf_token("session one");
    assert_eq!(token.len(), 64);
    assert_eq!(token, csrf_token("session one"), "stable for a session");
    let cases: [(&str, Option<&str>, bool); 5] = [
        ("session one", Some(token.as_str()), true),
        ("session two", Some(token.as_str()), false),
        ("session one", None, false),
        ("session one", Some(""), false),
        ("session one", Some(&token[..63]), false),
    ];
    for (session, presented, expected) in cases {
        assert_eq!(
            csrf_matches(session, presented),
            expected,
            "{session} {presented:?}"
        );
    }
}

#[test]
fn a_login_token_must_match_a_non_empty_cookie() {
    let cases = [
        (Some("abc"), Some("abc"), true),
        (Some("abc"), Some("abd"), false),
        (Some(""), Some(""), false),
        (None, Some("abc"), false),
        (Some("abc"), None, false),
    ];
    for (cookie, presented, expected) in cases {
        assert_eq!(
            login_token_matches(cookie, presented),
            expected,
            "{cookie:?} {presented:?}"
        );
    }
}

#[test]
fn a_login_sends_the_browser_only_to_this_console() {
    let cases = [
        ("/agents?page=2", "/agents?page=2"),
        ("/", "/"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/api/v1/agents", "/"),
        ("/login?next=/", "/"),
        ("/agents\r\nSet-Cookie: x=1", "/"),
        ("agents", "/"),
    ];
    for (next, expected) in cases {
        assert_eq!(safe_next(next), expected, "{next:?}");
    }
}

#[test]
fn the_session_cookie_is_secure_http_only_and_strict() {
    let value = set_cookie(SESSION_COOKIE, "t", 60);
    for part in [
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=60",
    ] {
        assert!(value.contains(part), "{value} lacks {part}");
    }
    assert!(!value.contains("Domain"), "a __Host- cookie has no Domain");
}
