use super::*;

fn segments(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect()
}

/// The table routes each method and path to one operation, and says what a path allows.
#[test]
fn routing() {
    let routed = |method: &str, path: &str| {
        let segments = segments(path);
        route(method, &segments).map(|m| {
            (
                m.route.operation,
                m.param("id").to_string(),
                m.param("name").to_string(),
            )
        })
    };
    type Routed<'a> = Result<(Operation, &'a str, &'a str), Unrouted>;
    let cases: &[(&str, &str, Routed)] = &[
        ("GET", "/groups", Ok((Operation::Groups, "", ""))),
        ("HEAD", "/groups", Ok((Operation::Groups, "", ""))),
        ("POST", "/groups", Ok((Operation::GroupCreate, "", ""))),
        ("PATCH", "/groups/7", Ok((Operation::GroupUpdate, "7", ""))),
        (
            "POST",
            "/groups/7/move",
            Ok((Operation::GroupMove, "7", "")),
        ),
        ("POST", "/agents/move", Ok((Operation::AgentsMove, "", ""))),
        ("GET", "/agents/a1b2", Ok((Operation::Agent, "a1b2", ""))),
        (
            "GET",
            "/agents/move",
            Err(Unrouted::MethodNotAllowed("POST".into())),
        ),
        (
            "POST",
            "/serverlists/Default/copy",
            Ok((Operation::ServerListCopy, "", "Default")),
        ),
        (
            "TRACE",
            "/login",
            Err(Unrouted::MethodNotAllowed("POST".into())),
        ),
        (
            "TRACE",
            "/session",
            Err(Unrouted::MethodNotAllowed("DELETE".into())),
        ),
        (
            "PUT",
            "/groups",
            Err(Unrouted::MethodNotAllowed("GET, POST, HEAD".into())),
        ),
        ("GET", "/nothing", Err(Unrouted::NotFound)),
        ("GET", "/groups/7/nothing", Err(Unrouted::NotFound)),
    ];
    for (method, path, expected) in cases {
        let expected = expected
            .clone()
            .map(|(op, id, name)| (op, id.to_string(), name.to_string()));
        assert_eq!(&routed(method, path), &expected, "{method} {path}");
    }
}

/// Every operation is in the table once, and every route in the document.
#[test]
fn every_operation_is_routed_and_documented() {
    let document = openapi::document();
    let mut seen = std::collections::HashSet::new();
    for route in ROUTES {
        assert!(seen.insert(route.operation), "{:?} twice", route.operation);
        let operation = &document["paths"][route.path][route.method.to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{} {} is not in the document",
            route.method,
            route.path
        );
        assert!(operation["responses"][route.ok.to_string()].is_object());
    }
    assert_eq!(document["openapi"], "3.1.0");
    // Every schema a reference names is in the components.
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let name = reference.split('"').next().unwrap();
        if let Some(schema) = name.strip_prefix("#/components/schemas/") {
            assert!(
                document["components"]["schemas"][schema].is_object(),
                "{name} is referenced but not defined"
            );
        }
    }
}

/// Requests refuse what the server refuses: unknown fields, and a change that is no change.
#[test]
fn requests_refuse_unknown_fields() {
    assert!(serde_json::from_str::<fleet::NewGroup>(r#"{"name":"x","colour":"red"}"#).is_err());
    assert!(
        serde_json::from_str::<tls::PlanRequest>(r#"{"protocol":"TLSv1.2","extra":1}"#).is_err()
    );
    let plan: tls::PlanRequest =
        serde_json::from_str(r#"{"protocol":"TLSv1.2","listener":"clients","limit":5}"#).unwrap();
    assert_eq!(plan.change().protocol.as_deref(), Some("TLSv1.2"));
    assert_eq!(plan.change().listener, Some(tls::ListenerChoice::Clients));
}

#[test]
fn a_harden_stages_and_applies_the_planned_directives_but_never_a_whole_conf_file() {
    use crate::tls::{ApplyRequest, ListenerChoice, PlanRequest, StageRequest};
    let plan = PlanRequest {
        protocol: Some("-all +TLSv1.2".into()),
        cipher_suite: Some("HIGH".into()),
        cipher_suite_tls13: Some("TLS_AES_256_GCM_SHA384".into()),
        certificate: Some("/etc/ward/new.pem".into()),
        key: Some("/etc/ward/new.key".into()),
        preset: Some("modern".into()),
        conf: Some("SSLProtocol -all +TLSv1.3\n".into()),
        conf_name: Some("ssl.conf".into()),
        listener: Some(ListenerChoice::Clients),
        offline_intervals: Some(7),
        limit: Some(5),
    };
    let stage = StageRequest::of_directives(&plan.change(), plan.offline_intervals);
    let apply = ApplyRequest::of_directives(&plan.change(), plan.offline_intervals);
    let mut directives = plan.change();
    directives.conf = None;
    directives.conf_name = None;
    assert_eq!(stage.change(), directives);
    assert_eq!(apply.change(), directives);
    assert_eq!(
        (stage.offline_intervals, apply.offline_intervals),
        (Some(7), Some(7))
    );
    assert_eq!(stage.legacy_group, None);
    assert_eq!(
        (apply.accept_cut_off, apply.accept_risk, apply.dry_run),
        (None, None, None)
    );
}
