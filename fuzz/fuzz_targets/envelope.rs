#![no_main]
//! The agent channel's MAC'd envelope, both ways. The first byte picks the side:
//!
//! - even: a check-in request as the server receives it (an HTTP/1.1 request: the
//!   `X-Ward-Agent`, `X-Ward-Time`, `X-Ward-Nonce` and `X-Ward-Mac` headers and the body),
//!   checked by `ward_proto::verify_request` as `agent_api::checkin` does. A MAC the fuzzer
//!   wrote never passes; the real MAC passes exactly when the nonce is well formed and the
//!   time within `MAX_SKEW_MS` of the server's clock (whatever the time says), once (a second
//!   time is a replay), and never under another key or with the method, path, agent, time or
//!   body changed.
//! - odd: a whole HTTP answer as the agent reads it (`ward_agent::transport::parse_response`),
//!   checked by `ward_agent::requests::verify_signed`. Only an answer signed with the agent's
//!   key for its request's nonce is read; signed, each status means one thing (200 the
//!   message, 503 busy with a bounded Retry-After, others refused); signed with another key
//!   or unsigned, it is never read. Written back as HTTP, a parsed answer parses the same.

use libfuzzer_sys::fuzz_target;
use ward_agent::core::MAX_RETRY_AFTER;
use ward_agent::requests::verify_signed;
use ward_agent::transport::{parse_response, Exchange};
use ward_agent::AgentError;
use ward_proto::messages::{decode, header, CheckinResponse, CHECKIN_PATH};
use ward_proto::{
    sign_request, sign_response, verify_request, AuthError, ReplayCache, Request, RequestAuth,
    MAX_SKEW_MS,
};

#[path = "common.rs"]
mod common;
use common::{key, other_key, with_mac, NONCE, NOW_MS, SERVER};

fuzz_target!(|data: &[u8]| {
    let Some((&side, rest)) = data.split_first() else {
        return;
    };
    if side % 2 == 0 {
        server_receives(rest);
    } else {
        agent_receives(rest);
    }
});

/// A request's or an answer's headers, as (name, value).
type Headers = Vec<(String, String)>;

/// An HTTP/1.1 request's headers and body (hyper's job in the server; here only what the
/// check-in handler then reads).
fn split_request(raw: &[u8]) -> Option<(Headers, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let headers = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Some((headers, &raw[end + 4..]))
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn server_receives(raw: &[u8]) {
    let Some((headers, body)) = split_request(raw) else {
        return;
    };
    let (Some(agent), Some(time_ms), Some(nonce), Some(mac)) = (
        header_value(&headers, header::AGENT),
        header_value(&headers, header::TIME).and_then(|t| t.parse::<i64>().ok()),
        header_value(&headers, header::NONCE),
        header_value(&headers, header::MAC),
    ) else {
        return; // 401 unsigned
    };
    let key = key();
    let auth = RequestAuth {
        agent: agent.to_string(),
        time_ms,
        nonce: nonce.to_string(),
    };
    let request = Request {
        method: "POST",
        path: CHECKIN_PATH,
        auth: &auth,
        body,
    };
    let well_formed_nonce = nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit());
    let real_mac = sign_request(&key, &request);

    // As received: only the real MAC can pass.
    let received = verify_request(&key, &request, mac, NOW_MS, &mut ReplayCache::default());
    if mac != real_mac {
        assert!(
            matches!(
                received,
                Err(AuthError::BadMac) | Err(AuthError::MalformedNonce)
            ),
            "a MAC that is not the request's was accepted: {received:?}"
        );
    }

    // The real MAC, at the server's clock and around the edges of the window.
    let nows = [
        NOW_MS,
        time_ms,
        time_ms.saturating_add(MAX_SKEW_MS),
        time_ms.saturating_sub(MAX_SKEW_MS),
        time_ms.saturating_add(MAX_SKEW_MS + 1),
        time_ms.saturating_sub(MAX_SKEW_MS + 1),
    ];
    for now in nows {
        let mut replay = ReplayCache::default();
        let result = verify_request(&key, &request, &real_mac, now, &mut replay);
        let skew = i128::from(now) - i128::from(time_ms);
        if !well_formed_nonce {
            assert_eq!(result, Err(AuthError::MalformedNonce));
        } else if skew.abs() > i128::from(MAX_SKEW_MS) {
            assert!(
                matches!(result, Err(AuthError::Stale { .. })),
                "time {time_ms} at {now}: {result:?}, expected stale"
            );
        } else {
            assert_eq!(result, Ok(()), "time {time_ms} at {now}");
            let again = verify_request(&key, &request, &real_mac, now, &mut replay);
            assert_eq!(again, Err(AuthError::Replayed), "a replay was accepted");
        }
    }
    if !well_formed_nonce {
        return;
    }

    // The real MAC under another key, or on anything changed: refused.
    let refused = |request: &Request<'_>, key: &ward_proto::AgentKey| {
        let result = verify_request(key, request, &real_mac, NOW_MS, &mut ReplayCache::default());
        assert_eq!(
            result,
            Err(AuthError::BadMac),
            "a MAC passed for what it does not cover"
        );
    };
    refused(&request, &other_key());
    let longer_body = [body, b" "].concat();
    refused(
        &Request {
            body: &longer_body,
            ..request
        },
        &key,
    );
    refused(
        &Request {
            path: "/agent/v1/enroll",
            ..request
        },
        &key,
    );
    refused(
        &Request {
            method: "PUT",
            ..request
        },
        &key,
    );
    let other_agent = RequestAuth {
        agent: format!("{agent}0"),
        ..auth.clone()
    };
    refused(
        &Request {
            auth: &other_agent,
            ..request
        },
        &key,
    );
    let other_time = RequestAuth {
        time_ms: time_ms.wrapping_add(1),
        ..auth.clone()
    };
    refused(
        &Request {
            auth: &other_time,
            ..request
        },
        &key,
    );
}

/// The answer written back as HTTP/1.1.
fn unparse(exchange: &Exchange) -> Vec<u8> {
    let mut raw = format!("HTTP/1.1 {} X\r\n", exchange.status);
    for (name, value) in &exchange.headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(&exchange.body);
    raw
}

fn agent_receives(raw: &[u8]) {
    let Some(exchange) = parse_response(raw) else {
        return;
    };
    assert!(exchange.body.len() <= raw.len());
    let again = parse_response(&unparse(&exchange)).expect("a parsed answer, written back, parses");
    assert_eq!(again.status, exchange.status);
    assert_eq!(again.headers, exchange.headers);
    assert_eq!(again.body, exchange.body);

    let key = key();
    let status = exchange.status;
    let body = &exchange.body;
    let real_mac = sign_response(&key, NONCE, status, body);
    let check =
        |exchange: &Exchange| verify_signed::<CheckinResponse>(&key, NONCE, SERVER, exchange);

    // As received: read only when signed with the real MAC.
    if let Ok(answer) = check(&exchange) {
        assert_eq!(
            exchange.header(header::MAC),
            Some(real_mac.as_str()),
            "an answer without the real MAC was read: {answer:?}"
        );
    }

    // Signed with the real MAC: each status means one thing.
    let signed = with_mac(&exchange, Some(real_mac.clone()));
    let message = decode::<CheckinResponse>("answer", body);
    match check(&signed) {
        Ok(answer) => {
            assert_eq!(status, 200, "a {status} answer was read as a message");
            assert_eq!(Ok(answer), message);
        }
        Err(AgentError::Busy { retry_after, .. }) => {
            assert_eq!(status, 503);
            assert!(
                retry_after <= MAX_RETRY_AFTER,
                "Retry-After {retry_after:?}"
            );
        }
        Err(AgentError::Refused {
            status: refused, ..
        }) => {
            assert_eq!(refused, status);
            assert!(status != 200 && status != 503, "a signed {status} refused");
        }
        Err(AgentError::Untrusted { .. }) => {
            assert_eq!(status, 200);
            assert!(
                message.is_err(),
                "a signed, well-formed answer was not read"
            );
        }
        Err(other) => panic!("a signed {status} answer: {other:?}"),
    }

    // Signed with another key, or for another request: never read.
    let forged = with_mac(
        &exchange,
        Some(sign_response(&other_key(), NONCE, status, body)),
    );
    let forged = check(&forged);
    assert!(
        matches!(forged, Err(AgentError::Untrusted { .. })),
        "signed with another key: {forged:?}"
    );
    let other_request = with_mac(
        &exchange,
        Some(sign_response(
            &key,
            "00000000000000000000000000000000",
            status,
            body,
        )),
    );
    let other_request = check(&other_request);
    assert!(
        matches!(other_request, Err(AgentError::Untrusted { .. })),
        "signed for another request: {other_request:?}"
    );

    // Unsigned: never read; an unsigned 503 is no instruction (no Retry-After obeyed).
    let unsigned = check(&with_mac(&exchange, None));
    match unsigned {
        Ok(answer) => panic!("an unsigned answer was read: {answer:?}"),
        Err(AgentError::Busy { .. }) => panic!("an unsigned 503 was obeyed"),
        Err(error) if status == 503 => {
            assert!(matches!(error, AgentError::Transport { .. }), "{error:?}")
        }
        Err(_) => {}
    }
}
