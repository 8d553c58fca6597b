//! The agent's side of the protocol, pure: signed requests built from ward-proto's messages,
//! and answers checked (MAC bound to the request) and read into ward-proto's types. `ward
//! agent` and `ward simulate` both send exactly these bytes.

use std::time::Duration;

use serde::de::DeserializeOwned;
use ward_proto::messages::{self, header, CheckinRequest, EnrollRequest, HostReport, CHECKIN_PATH};
use ward_proto::{enroll as proof, hex, now_ms, AgentKey, KeyPair, RequestAuth};

use crate::core::MAX_RETRY_AFTER;
use crate::error::AgentError;
use crate::transport::Exchange;
use crate::{HostFacts, Offer, VERSION};

/// What the agent reports of itself.
pub fn host_report(host: &HostFacts, offer: Offer) -> HostReport {
    HostReport {
        hostname: host.hostname.clone(),
        os_name: host.os_name.clone(),
        os_version: host.os_version.clone(),
        agent_version: VERSION.to_string(),
        tls_versions: offer.versions(),
        name: host.name.clone(),
        simulated: host.simulated,
    }
}

/// An enrollment request, ready to send: its body, the nonce its answer is bound to, and the
/// agent key that checks the answer.
pub struct Enrollment {
    pub body: String,
    pub nonce: String,
    pub key: AgentKey,
}

/// An enrollment request for the key `pair` against the server's agreement key, proving
/// `token` without sending it. `existing` re-registers that agent id (same key); `hello` is
/// the ClientHello its TLS stack sends (self-reported).
pub fn enroll_request(
    server_public: &[u8],
    pair: &KeyPair,
    token: &str,
    offer: Offer,
    existing: Option<&str>,
    host: &HostFacts,
    hello: Option<&[u8]>,
) -> Result<Enrollment, AgentError> {
    let openssl = |e: openssl::error::ErrorStack| AgentError::state(format!("key: {e}"));
    let agent_public = pair.public_bytes().map_err(openssl)?;
    let key = AgentKey::for_agent(pair, server_public).map_err(openssl)?;
    let token_sha = proof::token_sha256(token);
    let auth = RequestAuth::new("", now_ms());
    let statement = proof::statement(
        &token_sha,
        &auth.nonce,
        auth.time_ms,
        &hex(&agent_public),
        existing,
    );
    let request = EnrollRequest {
        agent_public: hex(&agent_public),
        token_lookup: proof::token_lookup(&token_sha),
        proof: proof::proof(&key, &statement),
        nonce: auth.nonce.clone(),
        time_ms: auth.time_ms,
        host: host_report(host, offer),
        agent: existing.map(str::to_string),
        hello: hello.map(ward_proto::hex),
    };
    Ok(Enrollment {
        body: messages::encode(&request),
        nonce: auth.nonce,
        key,
    })
}

/// A signed request, ready to send: its body and headers, and the nonce its answer must be
/// bound to.
pub struct SignedRequest {
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    pub nonce: String,
}

/// A signed check-in: what the agent acknowledges and reports (`request`), signed with the
/// agent's key.
pub fn checkin_request(agent: &str, key: &AgentKey, request: &CheckinRequest) -> SignedRequest {
    let body = messages::encode(request);
    let (signed, nonce) =
        ward_proto::signed_headers(key, agent, "POST", CHECKIN_PATH, body.as_bytes(), now_ms());
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    headers.extend(signed);
    SignedRequest {
        body,
        headers,
        nonce,
    }
}

/// Checks an answer from `server` bound to the request's `nonce` and reads it as `T`. A
/// refusal, a busy server, a missing or bad MAC and a malformed body are each their own
/// error. Only a signed answer is an instruction: an unsigned 503 (a server over its
/// connection cap cannot sign, and anyone on the plain channel can forge one) is a transport
/// failure, so the agent's own bounded back-off applies and its Retry-After is ignored.
pub fn verify_signed<T: DeserializeOwned>(
    key: &AgentKey,
    nonce: &str,
    server: &str,
    exchange: &Exchange,
) -> Result<T, AgentError> {
    // A signed 503's wait: the one in its (signed) body; a server from before that field
    // gives only the header.
    let retry_after = || {
        messages::decode::<messages::ErrorBody>("busy answer", &exchange.body)
            .ok()
            .and_then(|body| body.retry_after_s)
            .or_else(|| {
                exchange
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .map_or(Duration::from_secs(5), Duration::from_secs)
            .min(MAX_RETRY_AFTER)
    };
    let Some(mac) = exchange.header(header::MAC) else {
        if exchange.status == 503 {
            return Err(AgentError::transport(
                server,
                "503 without a signature (a server over its connection cap, or a forgery): \
                 treated as unreachable, its Retry-After ignored",
            ));
        }
        return Err(match messages::error_message(&exchange.body) {
            Some(error) => AgentError::Refused {
                server: server.to_string(),
                status: exchange.status,
                code: error.code,
                message: error.message,
            },
            None => AgentError::untrusted(
                server,
                format!(
                    "the server answered {} without a signature",
                    exchange.status
                ),
            ),
        });
    };
    ward_proto::verify_response(key, nonce, exchange.status, &exchange.body, mac)
        .map_err(|e| AgentError::untrusted(server, e))?;
    if exchange.status == 503 {
        return Err(AgentError::Busy {
            server: server.to_string(),
            retry_after: retry_after(),
        });
    }
    if exchange.status != 200 {
        let error = messages::error_message(&exchange.body);
        return Err(AgentError::Refused {
            server: server.to_string(),
            status: exchange.status,
            code: error.as_ref().map_or("refused".into(), |e| e.code.clone()),
            message: error.map_or("refused".into(), |e| e.message),
        });
    }
    messages::decode("answer", &exchange.body).map_err(|e| AgentError::untrusted(server, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_proto::messages::{encode, CheckinResponse, ErrorBody};

    fn exchange(status: u16, body: &str, mac: Option<String>) -> Exchange {
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        if let Some(mac) = mac {
            headers.push(("x-ward-mac".into(), mac));
        }
        if status == 503 {
            headers.push(("Retry-After".into(), "3600".into()));
        }
        Exchange {
            status,
            headers,
            body: body.as_bytes().to_vec(),
            channel: "http",
            tls_version: None,
        }
    }

    #[test]
    fn answers_are_read_by_kind() {
        let key = AgentKey::from_bytes([7; 32]);
        let other = AgentKey::from_bytes([8; 32]);
        let ok_body = encode(&CheckinResponse {
            serial: 3,
            settings: None,
        });
        let sign = |key: &AgentKey, status: u16, body: &str| {
            Some(ward_proto::sign_response(
                key,
                "n1",
                status,
                body.as_bytes(),
            ))
        };
        let check = |exchange: &Exchange| {
            verify_signed::<CheckinResponse>(&key, "n1", "http://s:8014", exchange)
        };

        let answer = check(&exchange(200, &ok_body, sign(&key, 200, &ok_body))).unwrap();
        assert_eq!(answer.serial, 3);

        let forged = check(&exchange(200, &ok_body, sign(&other, 200, &ok_body)));
        assert!(
            matches!(forged, Err(AgentError::Untrusted { .. })),
            "{forged:?}"
        );

        let unsigned = check(&exchange(200, &ok_body, None));
        assert!(
            matches!(unsigned, Err(AgentError::Untrusted { .. })),
            "{unsigned:?}"
        );

        let refusal = encode(&ErrorBody::new("unknown_agent", "unknown agent"));
        let refused = check(&exchange(401, &refusal, None));
        assert_eq!(
            refused,
            Err(AgentError::Refused {
                server: "http://s:8014".into(),
                status: 401,
                code: "unknown_agent".into(),
                message: "unknown agent".into()
            })
        );

        // An unsigned 503 with Retry-After: 3600 is no instruction: a transport failure.
        let busy = check(&exchange(503, &refusal, None));
        let error = busy.unwrap_err();
        assert!(matches!(error, AgentError::Transport { .. }), "{error:?}");
        assert_eq!(error.retry_after(), None);
        // A signed one from a server that puts no wait in its body: the header's.
        let busy = check(&exchange(503, &refusal, sign(&key, 503, &refusal)));
        assert_eq!(
            busy.unwrap_err().retry_after(),
            Some(Duration::from_secs(3600))
        );
        // The signed body's wait wins over the header (which the MAC does not cover).
        let shed = encode(&ErrorBody::busy("at its limit", Duration::from_secs(17)));
        let busy = check(&exchange(503, &shed, sign(&key, 503, &shed)));
        assert_eq!(
            busy.unwrap_err().retry_after(),
            Some(Duration::from_secs(17))
        );
        // A changed wait breaks the MAC: no instruction at all.
        let stretched = shed.replace("17", "3600");
        let forged = check(&exchange(503, &stretched, sign(&key, 503, &shed)));
        assert!(
            matches!(forged, Err(AgentError::Untrusted { .. })),
            "{forged:?}"
        );

        let malformed = "{\"serial\": \"three\"}\n";
        let garbled = check(&exchange(200, malformed, sign(&key, 200, malformed)));
        assert!(
            matches!(garbled, Err(AgentError::Untrusted { .. })),
            "{garbled:?}"
        );
    }
}
