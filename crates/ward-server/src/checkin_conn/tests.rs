use super::*;

const LIMIT: usize = 1000;

fn head(text: &str) -> Parsed {
    parse(text.as_bytes(), LIMIT)
}

#[test]
fn a_request_keeps_its_connection_when_http_1_1_says_so() {
    for (head, kept) in [
        ("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", true),
        (
            "GET /healthz HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
            true,
        ),
        ("GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", false),
        (
            "GET /healthz HTTP/1.1\r\nconnection: Upgrade , CLOSE\r\n\r\n",
            false,
        ),
        ("GET /healthz HTTP/1.0\r\nHost: a\r\n\r\n", false),
        ("GET /healthz HTTP/1.1\r\nHost: a\r\n", false),
        ("not http at all\r\n\r\n", false),
        ("", false),
    ] {
        assert_eq!(keeps_alive(head.as_bytes()), kept, "{head:?}");
    }
}

#[test]
fn only_a_plain_checkin_is_served_here_and_everything_else_goes_to_hyper() {
    let checkin = "POST /agent/v1/checkin HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nConnection: close\r\nX-Ward-Agent: ag-1\r\n\r\n";
    let Parsed::Checkin(parsed) = head(checkin) else {
        panic!("a check-in head is served here")
    };
    assert_eq!(parsed.head_len, checkin.len());
    assert_eq!(parsed.body_len, 12);
    assert!(parsed.close);
    assert_eq!(parsed.headers.get("x-ward-agent").unwrap(), "ag-1");

    let keep_alive = "POST /agent/v1/checkin HTTP/1.1\r\nContent-Length: 0\r\nConnection: keep-alive, Upgrade\r\n\r\n";
    assert!(matches!(
        head(keep_alive),
        Parsed::Checkin(CheckinHead { close: false, .. })
    ));
    let close_in_a_list = "POST /agent/v1/checkin HTTP/1.1\r\nContent-Length: 0\r\nConnection: Upgrade , CLOSE\r\n\r\n";
    assert!(matches!(
        head(close_in_a_list),
        Parsed::Checkin(CheckinHead { close: true, .. })
    ));

    // (bytes, what they are, why)
    let table: &[(&str, Parsed, &str)] = &[
        ("", Parsed::Partial, "nothing yet"),
        ("POST /agent/v1/check", Parsed::Partial, "half a request line"),
        ("POST /agent/v1/checkin HTTP/1.1\r\nContent-Length: 1\r\n", Parsed::Partial, "no blank line yet"),
        ("GET /agent/v1/checkin HTTP/1.1\r\n\r\n", Parsed::Other, "another method"),
        ("POST /agent/v1/enroll HTTP/1.1\r\nContent-Length: 2\r\n\r\n", Parsed::Other, "another path"),
        ("POST /agent/v1/checkin?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n", Parsed::Other, "a query"),
        ("POST /agent/v1/checkin HTTP/1.0\r\nContent-Length: 2\r\n\r\n", Parsed::Other, "HTTP/1.0"),
        ("POST /agent/v1/checkin HTTP/1.1\r\n\r\n", Parsed::Other, "no length"),
        ("POST /agent/v1/checkin HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", Parsed::Other, "over the limit: hyper answers 413"),
        ("POST /agent/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", Parsed::Other, "two lengths"),
        ("POST /agent/v1/checkin HTTP/1.1\r\nContent-Length: +2\r\n\r\n", Parsed::Other, "a signed length"),
        ("POST /agent/v1/checkin HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n", Parsed::Other, "a length list"),
        ("POST /agent/v1/checkin HTTP/1.1\r\nContent-Length: \r\n\r\n", Parsed::Other, "an empty length"),
        ("POST /agent/v1/checkin HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n", Parsed::Other, "chunked"),
        ("POST /agent/v1/checkin HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", Parsed::Other, "expect"),
        ("POST  /agent/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\n\r\n", Parsed::Other, "a malformed request line"),
        ("POST /agent/v1/checkin HTTP/1.1\r\nBad Name: x\r\nContent-Length: 2\r\n\r\n", Parsed::Other, "a malformed header"),
    ];
    for (bytes, expected, why) in table {
        assert_eq!(&head(bytes), expected, "{why}: {bytes:?}");
    }

    let many = format!(
        "POST /agent/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\n{}\r\n",
        "X-A: b\r\n".repeat(MAX_HEADERS)
    );
    assert_eq!(
        head(&many),
        Parsed::Other,
        "more header lines than served here"
    );
    let long = format!(
        "POST /agent/v1/checkin HTTP/1.1\r\nContent-Length: 2\r\nX-A: {}\r\n\r\n",
        "b".repeat(MAX_HEAD)
    );
    assert_eq!(head(&long), Parsed::Other, "a head beyond the limit");
    assert_eq!(
        head(&long[..MAX_HEAD + 10]),
        Parsed::Other,
        "an unfinished head beyond the limit"
    );
}

#[test]
fn a_response_is_written_with_its_length_and_close_when_asked() {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("content-length", HeaderValue::from_static("999"));
    headers.insert("x-ward-signature", HeaderValue::from_static("abc"));
    let bytes = serialize(StatusCode::OK, &headers, b"{}", true);
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-ward-signature: abc\r\n\
         content-length: 2\r\nconnection: close\r\n\r\n{}"
    );
    let bytes = serialize(
        StatusCode::SERVICE_UNAVAILABLE,
        &HeaderMap::new(),
        b"",
        false,
    );
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
    );
}

/// Thousands of push check-ins are held at once, each for minutes, and a held check-in's task
/// keeps its whole state machine: room for its largest step. Verifying and recording, and
/// each step of the connection around it, are boxed while they run, so what stays is the
/// hold's own state. Before the split (release build): 14,712 bytes for the connection's
/// state with the check-in inside it; after: 1,168 and 1,976.
#[test]
fn a_held_check_in_keeps_only_the_state_of_its_hold() {
    let (_dir, app) = crate::state::test_app();
    let headers = HeaderMap::new();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let claim = Default::default();
    let held = crate::agent_api::checkin(
        &app,
        Role::Clients,
        peer,
        None,
        &claim,
        &headers,
        bytes::Bytes::new(),
    );
    let (stream, _other) = tokio::io::duplex(64);
    let connection = serve(&app, Role::Clients, None, peer, &claim, 0, stream);
    let (held, connection) = (
        std::mem::size_of_val(&held),
        std::mem::size_of_val(&connection),
    );
    assert!(held <= 3 * 1024, "a held check-in's state: {held} bytes");
    assert!(
        connection <= 2 * 1024,
        "a kept connection's state: {connection} bytes"
    );
}
