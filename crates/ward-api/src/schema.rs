//! What the document says of a value beyond its type: the exact patterns of names and paths
//! (built from ward-fleet's own rules, so the two cannot drift), and the formats of values no
//! pattern can describe (a duration within a range, an `SSLProtocol` line, an OpenSSL cipher
//! list, a file on the server). Each format is named `ward-*` or after what it is, and
//! described; `scripts/api-fuzz-hooks.py` tells schemathesis how to make valid ones.
//!
//! Used with `#[schemars(schema_with = "...")]` on the request types' fields.

use schemars::{json_schema, Schema, SchemaGenerator};
use serde_json::{json, Value};

/// `schema`, or `null` (a field a request may send as null, meaning "as it is").
fn or_null(mut schema: Value) -> Schema {
    schema["type"] = json!([schema["type"].clone(), "null"]);
    Schema::try_from(schema).expect("an object")
}

fn name_value() -> Value {
    json!({
        "type": "string",
        "pattern": ward_fleet::name::name_pattern(),
        "description": "a group or server list name: 1 to 64 characters, no '/', no control \
                        or invisible characters, no space at either end, not '.' or '..'",
    })
}

fn path_value() -> Value {
    json!({
        "type": "string",
        "pattern": ward_fleet::name::path_pattern(),
        "description": "a group's path: its names from the root down, joined with '/' \
                        ('My Company/Legacy XP'), at most 32 names",
    })
}

pub fn name(_: &mut SchemaGenerator) -> Schema {
    Schema::try_from(name_value()).expect("an object")
}

pub fn name_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(name_value())
}

pub fn path(_: &mut SchemaGenerator) -> Schema {
    Schema::try_from(path_value()).expect("an object")
}

pub fn path_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(path_value())
}

/// The longest search text an agents query takes.
pub const SEARCH_MAX: usize = 200;

pub fn search_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(json!({
        "type": "string",
        "maxLength": SEARCH_MAX,
        "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$",
        "description": "a part of an agent's id or host name (ASCII case ignored), without \
                        control characters",
    }))
}

pub fn fingerprint_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(json!({
        "type": "string",
        "pattern": "^[0-9a-f]{64}$",
        "description": "a ClientHello's fingerprint: its SHA-256, in lower-case hex",
    }))
}

pub fn account_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": ward_fleet::name::account_pattern(),
        "not": {"pattern": "^[Ll][Oo][Cc][Aa][Ll]-[Aa][Dd][Mm][Ii][Nn]$"},
        "description": "an account name: as a group name, without ':' and not 'local-admin' \
                        (the audit log's names for other actors)",
    })
}

pub fn password(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 12, "description": "at least 12 characters"})
}

/// The syntax of ward's durations (`500ms`, `90s`, `5m`, `1h30m`, `7d`); each format says
/// the range.
const DURATION_SYNTAX: &str = "^\\s*([0-9]+\\s*(ms|s|m|h|d)\\s*)+$";

fn duration_value(format: &str, description: &str) -> Value {
    json!({
        "type": "string",
        "format": format,
        "pattern": DURATION_SYNTAX,
        "description": description,
        "example": "5m",
    })
}

pub fn interval_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(duration_value(
        "ward-interval",
        "a check-in interval: a duration from 1s to 365d (500ms, 90s, 5m, 1h30m, 7d)",
    ))
}

pub fn randomize_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(duration_value(
        "ward-randomize",
        "a randomisation of the interval: a duration from 0s to 365d",
    ))
}

pub fn token_lifetime_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "format": "ward-token-lifetime",
        "pattern": "^(never|\\s*([0-9]+\\s*(ms|s|m|h|d)\\s*)+)$",
        "description": "how long the token works: a duration of at least 1m, or 'never' \
                        (default 7d)",
    })
}

pub fn package_lifetime_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(duration_value(
        "ward-package-lifetime",
        "how long the package's token works: a duration from 1ms to 30d (default 24h)",
    ))
}

pub fn lookback(_: &mut SchemaGenerator) -> Schema {
    Schema::try_from(duration_value(
        "ward-lookback",
        "how far back: a duration (24h), at most what milliseconds since 1970 hold",
    ))
    .expect("an object")
}

pub fn server_entry(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "format": "ward-server-entry",
        "description": "a server list entry: PRIORITY:URL, a priority from 1 (first) to 16 \
                        and an http or https URL with a port, e.g. \
                        1:https://mgr1.example.com:443 or 2:http://mgr2:8014",
        "example": "1:https://mgr1:443",
    })
}

pub fn server_entries(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": server_entry(generator),
        "minItems": 1,
        "maxItems": ward_fleet::serverlist::MAX_SERVERS,
        "uniqueItems": true,
        "description": "each server once (an address, protocol and port listed twice is refused)",
    })
}

pub fn ssl_protocol_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "format": "ssl-protocol",
        "description": "an SSLProtocol value as Apache httpd 2.4 reads it: words among all, \
                        SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3 (case-insensitive), \
                        each optionally prefixed with + or -; SSLv2 and SSLv3 may only be \
                        removed, and the result must not be empty",
        "example": "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
    })
}

pub fn cipher_list_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "format": "openssl-cipher-list",
        "description": "an OpenSSL cipher list for TLS 1.2 and below (SSLCipherSuite) that \
                        matches at least one suite of ward's OpenSSL; one line",
        "example": "HIGH:!aNULL:!MD5",
    })
}

pub fn tls13_suites_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "format": "openssl-tls13-suites",
        "description": "TLS 1.3 suites (SSLCipherSuite TLSv1.3), colon-separated, that ward's \
                        OpenSSL knows; one line",
        "example": "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
    })
}

pub fn certificate_file_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "format": "pem-certificate-file",
        "description": "a PEM file on the server (relative paths from its data dir): the \
                        certificate chain, leaf first",
    })
}

pub fn key_file_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "format": "pem-key-file",
        "description": "a PEM file on the server (relative paths from its data dir): the \
                        private key of the certificate's leaf",
    })
}

pub fn ssl_conf_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "format": "apache-ssl-conf",
        "description": "a whole conf file in Apache httpd's syntax for the listener(s), read as \
                        ward reads ssl.conf: valid directives only",
    })
}

pub fn preset_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "enum": [
            "mozilla-modern",
            "mozilla-intermediate",
            "mozilla-old",
            "nist-800-52r2",
            "pci-dss-4",
            null
        ],
        "description": "a compliance preset: its SSLProtocol and suites",
    })
}

/// A policy document: a JSON object within ward-proto's limits.
pub fn policy_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["object", "null"],
        "description": format!(
            "the group's policy document, free-form JSON handed to its agents: an object \
             nested at most {} levels, at most {} bytes as compact JSON",
            ward_proto::policy::MAX_DEPTH,
            ward_proto::policy::MAX_BYTES
        ),
    })
}

/// Any JSON value (a policy document as answered, an audit entry's before and after).
pub fn any(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"description": "free-form JSON"})
}
