//! The OpenAPI 3 description of the admin API, served without authentication at
//! `/api/v1/openapi.json`.

use serde_json::{json, Value};

fn error_responses() -> Value {
    let error = json!({"$ref": "#/components/responses/Error"});
    json!({
        "400": error, "401": error, "403": error, "404": error, "405": error,
        "409": error, "413": error, "422": error, "429": error,
    })
}

fn operation(summary: &str, body: Option<Value>, ok_status: &str) -> Value {
    let mut responses = error_responses();
    responses[ok_status] =
        json!({"description": "success", "content": {"application/json": {"schema": {}}}});
    let mut op = json!({"summary": summary, "responses": responses});
    if let Some(schema) = body {
        op["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": schema}}});
    }
    op
}

fn path_param(name: &str, kind: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": kind}})
}

fn query_param(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": {"type": kind}, "description": description})
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

pub fn document() -> Value {
    let string = json!({"type": "string"});
    let duration = json!({"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)$", "example": "5m"});
    let group_patch = object(
        json!({
            "name": string,
            "server_list": string,
            "interval": duration,
            "randomize": duration,
            "mode": {"type": "string", "enum": ["pull", "push"]},
            "policy": {"type": "object"},
            "inherit": {"type": "array", "items": {"type": "string", "enum": ["server_list", "interval", "randomize", "mode", "policy"]}},
            "accept_cut_off": {"type": "boolean", "description": "change it even though agents would lose their last path (audited); otherwise 409 would_cut_off"},
        }),
        &[],
    );
    let mut group_id_get = operation("a group, with own and effective settings", None, "200");
    group_id_get["parameters"] = json!([path_param("id", "integer")]);
    let mut group_id_patch = operation(
        "set or inherit a group's settings, or rename it",
        Some(group_patch),
        "200",
    );
    group_id_patch["parameters"] = json!([path_param("id", "integer")]);
    let mut group_id_delete = operation("delete an empty group", None, "200");
    group_id_delete["parameters"] = json!([path_param("id", "integer")]);
    let mut group_move = operation(
        "move a group under another parent",
        Some(object(
            json!({"parent": string, "accept_cut_off": {"type": "boolean"}}),
            &["parent"],
        )),
        "200",
    );
    group_move["parameters"] = json!([path_param("id", "integer")]);
    let mut list_get = operation("a server list", None, "200");
    list_get["parameters"] = json!([path_param("name", "string")]);
    let mut list_delete = operation("delete a server list no group uses", None, "200");
    list_delete["parameters"] = json!([path_param("name", "string")]);
    let mut list_copy = operation(
        "copy a list with every server on one protocol and port (the seed's HTTP 8014 list)",
        Some(object(
            json!({"name": string, "protocol": {"type": "string", "enum": ["http", "https"]}, "port": {"type": "integer", "minimum": 1, "maximum": 65535}}),
            &["name"],
        )),
        "201",
    );
    list_copy["parameters"] = json!([path_param("name", "string")]);
    let mut clients_get = operation(
        "agents, filtered (`/clients` is an alias of `/agents`)",
        None,
        "200",
    );
    clients_get["parameters"] = json!([
        query_param(
            "group",
            "string",
            "a group path; its subgroups are included"
        ),
        query_param(
            "pending",
            "boolean",
            "only agents that have not acknowledged their serial"
        ),
        query_param(
            "tls_max",
            "string",
            "only agents whose best TLS version is at most this"
        ),
        query_param(
            "online",
            "boolean",
            "only agents online (true) or offline (false) now: a held push check-in, or a pull check-in within interval + randomisation + grace"
        ),
        query_param(
            "silent_for",
            "string",
            "only agents not seen for this long, e.g. 1h"
        ),
        query_param("limit", "integer", "at most this many"),
    ]);
    let mut client_get = operation("one agent", None, "200");
    client_get["parameters"] = json!([path_param("id", "string")]);
    let mut token_revoke = operation("revoke an enrollment token", None, "200");
    token_revoke["parameters"] = json!([path_param("id", "integer")]);
    let mut audit_get = operation("the audit log, oldest first", None, "200");
    audit_get["parameters"] = json!([
        query_param("since", "string", "how far back, e.g. 24h"),
        query_param("limit", "integer", "at most this many entries"),
    ]);

    let mut readiness = operation(
        "the fleet by TLS capability, per listener and group; lost agents with the ClientHello \
         they offered",
        None,
        "200",
    );
    readiness["parameters"] = json!([
        query_param("limit", "integer", "agents listed per bucket"),
        query_param(
            "offline_intervals",
            "integer",
            "silent this many intervals = lost"
        ),
        query_param(
            "silent_since",
            "integer",
            "also list agents not heard from since this unix ms"
        ),
    ]);
    let listener = json!({"type": "string", "enum": ["clients", "console", "all"]});
    let words = json!({"type": "string", "example": "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1"});
    let intervals = json!({"type": "integer", "minimum": 1, "maximum": 1000});
    let preset = json!({"type": "string", "enum": ward_plan::preset::PRESETS.iter().map(|p| p.name).collect::<Vec<_>>()});
    // A proposed TLS change: any of these (a conf file alone; a preset without protocol or
    // suites).
    let proposal = json!({
        "protocol": words,
        "cipher_suite": {"type": "string", "example": "HIGH:!3DES"},
        "cipher_suite_tls13": {"type": "string", "example": "TLS_AES_256_GCM_SHA384"},
        "certificate": {"type": "string", "description": "a certificate file on the server host"},
        "key": {"type": "string"},
        "preset": preset,
        "conf": {"type": "string", "description": "a whole proposed conf file's text"},
        "conf_name": string,
        "listener": listener,
    });
    let with = |extra: Value| {
        let mut properties = proposal.clone();
        for (key, value) in extra.as_object().into_iter().flatten() {
            properties[key] = value.clone();
        }
        object(properties, &[])
    };
    let plan = operation(
        "who a proposed TLS change would cut off or put at risk, every agent's and peer's real ClientHello replayed (read-only)",
        Some(with(json!({"offline_intervals": intervals, "limit": {"type": "integer", "minimum": 0}}))),
        "200",
    );
    let stage = operation(
        "harden step 1: HTTP server lists, legacy groups, and the moves of agents that would be cut off (422 first when a conf file has errors)",
        Some(with(json!({"legacy_group": string, "legacy_name": string, "offline_intervals": intervals}))),
        "200",
    );
    let apply = operation(
        "harden step 3: edit SSLProtocol, SSLCipherSuite and the certificate in the listener files, configtest, reload",
        Some(object(
            json!({
                "protocol": words,
                "cipher_suite": string,
                "cipher_suite_tls13": string,
                "preset": preset,
                "certificate": string,
                "key": string,
                "listener": listener,
                "accept_cut_off": {"type": "boolean", "description": "apply even though agents would lose their last path (audited with their ids); otherwise 409 with the list"},
                "accept_risk": {"type": "boolean", "description": "apply even though agents of unknown capability or offline would be cut off"},
                "offline_intervals": {"type": "integer", "minimum": 1, "maximum": 1000},
            }),
            &[],
        )),
        "200",
    );
    let rollback = operation(
        "restore the conf files from before the last harden, reload; optionally move agents back (409 would_cut_off when agents with a path would lose it, unless accept_cut_off)",
        Some(object(json!({"move_back": {"type": "boolean"}, "dry_run": {"type": "boolean"}, "accept_cut_off": {"type": "boolean"}}), &[])),
        "200",
    );
    let cleanup = operation(
        "remove the empty legacy groups and unused HTTP server lists harden created, conf backups beyond the newest keep_backups, unreferenced saved copies",
        Some(object(json!({"keep_backups": {"type": "integer", "minimum": 0, "maximum": 1000}, "dry_run": {"type": "boolean"}}), &[])),
        "200",
    );
    let reload = operation(
        "re-read the TLS conf files, guarded: 409 would_cut_off (old settings keep serving) when agents with a path would lose it, unless accept_cut_off; dry_run plans only",
        Some(object(json!({"accept_cut_off": {"type": "boolean"}, "dry_run": {"type": "boolean"}}), &[])),
        "200",
    );
    let ca_switch = operation(
        "finish a CA rotation: the listeners' certificates re-issued from the new CA, guarded: 409 would_cut_off (nothing changes) when agents that do not trust it would lose their last path, unless accept_cut_off; dry_run plans only; 409 no_rotation, 409 reload_first",
        Some(object(json!({"accept_cut_off": {"type": "boolean"}, "dry_run": {"type": "boolean"}}), &[])),
        "200",
    );
    let mut account_delete = operation("delete an account; its sessions end", None, "200");
    account_delete["parameters"] = json!([path_param("name", "string")]);
    let mut account_password = operation(
        "set an account's password; its sessions end",
        Some(object(
            json!({"password": {"type": "string", "minLength": 12}}),
            &["password"],
        )),
        "200",
    );
    account_password["parameters"] = json!([path_param("name", "string")]);
    let mut account_disable = operation(
        "disable an account: kept, refused at login, its sessions end at once",
        None,
        "200",
    );
    account_disable["parameters"] = json!([path_param("name", "string")]);
    let mut account_enable = operation("enable a disabled account", None, "200");
    account_enable["parameters"] = json!([path_param("name", "string")]);
    let mut account_revoke = operation("end every session of an account", None, "200");
    account_revoke["parameters"] = json!([path_param("name", "string")]);

    let mut document = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "ward admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Served on the console listener only. Every path except /login and this document needs 'Authorization: Bearer TOKEN'; the auditor role may only read."
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "refused, with a stable code and a sentence",
                    "content": {"application/json": {"schema": object(
                        json!({"error": object(json!({"code": string, "message": string}), &["code", "message"])}),
                        &["error"],
                    )}}
                }
            }
        },
        "paths": {
            "/login": {"post": {
                "security": [],
                "summary": "log in; returns a bearer token with an expiry",
                "requestBody": {"required": true, "content": {"application/json": {"schema": object(json!({"user": string, "password": string}), &["user", "password"])}}},
                "responses": {"200": {"description": "a token"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/Error"}}
            }},
            "/server": {"get": operation("server status: listeners, TLS, reloads", None, "200")},
            "/server/reload": {"post": reload},
            "/groups": {
                "get": operation("every group, with own and effective settings", None, "200"),
                "post": operation("create a group", Some(object(json!({"name": string, "parent": string}), &["name"])), "201"),
            },
            "/groups/{id}": {"get": group_id_get, "patch": group_id_patch, "delete": group_id_delete},
            "/groups/{id}/move": {"post": group_move},
            "/serverlists": {
                "get": operation("every server list and the groups that use it", None, "200"),
                "post": operation("create a server list", Some(object(
                    json!({"name": string, "servers": {"type": "array", "minItems": 1, "items": {"type": "string", "example": "1:https://mgr1:443"}}}),
                    &["name", "servers"],
                )), "201"),
            },
            "/serverlists/{name}": {"get": list_get, "delete": list_delete},
            "/serverlists/{name}/copy": {"post": list_copy},
            "/agents": {"get": clients_get},
            "/agents/{id}": {"get": client_get},
            "/agents/delete": {"post": operation("retire agents: forgotten, their check-ins refused from then on", Some(object(
                json!({"ids": {"type": "array", "minItems": 1, "items": string}}),
                &["ids"],
            )), "200")},
            "/agents/move": {"post": operation("move agents to a group (409 would_cut_off when its server list leaves one no path, unless accept_cut_off)", Some(object(
                json!({"ids": {"type": "array", "minItems": 1, "items": string}, "group": string, "accept_cut_off": {"type": "boolean"}}),
                &["ids", "group"],
            )), "200")},
            "/tokens": {
                "get": operation("enrollment tokens (never the token itself)", None, "200"),
                "post": operation("create an enrollment token for a group; the token is shown once", Some(object(
                    json!({"group": string, "expires": duration, "uses": {"type": "integer", "minimum": 0}, "allow_http": {"type": "boolean"}}),
                    &["group"],
                )), "201"),
            },
            "/tokens/{id}/revoke": {"post": token_revoke},
            "/audit": {"get": audit_get},
            "/tls/readiness": {"get": readiness},
            "/tls/plan": {"post": plan},
            "/tls/harden": {"get": operation("the state of the last harden, for --resume and rollback", None, "200")},
            "/tls/harden/stage": {"post": stage},
            "/tls/harden/apply": {"post": apply},
            "/tls/harden/cleanup": {"post": cleanup},
            "/tls/rollback": {"post": rollback},
            "/accounts": {
                "get": operation("accounts and their roles", None, "200"),
                "post": operation("create an admin or auditor account", Some(object(
                    json!({"name": string, "password": {"type": "string", "minLength": 12}, "role": {"type": "string", "enum": ["admin", "auditor"]}}),
                    &["name", "password", "role"],
                )), "201"),
            },
            "/accounts/{name}": {"delete": account_delete},
            "/accounts/{name}/password": {"post": account_password},
            "/accounts/{name}/disable": {"post": account_disable},
            "/accounts/{name}/enable": {"post": account_enable},
            "/accounts/{name}/revoke": {"post": account_revoke},
            "/session": {"delete": operation("log out: end the caller's own session", None, "200")},
        }
    });
    // The CA rotation, apart: one more entry in the literal above passes serde_json's
    // macro recursion limit.
    document["paths"]["/server/ca"] = json!({"get": operation("CA rotation status: the CAs (current, next, previous) and the agents that have not acknowledged the next one", None, "200")});
    document["paths"]["/server/ca/rotate"] = json!({"post": operation("start a CA rotation: a new CA, handed to every agent inside its signed settings (during a rotation: the same one handed out again, resent: true); 409 not_ward_certificate when the clients listener serves a certificate ward's CA did not issue", None, "200")});
    document["paths"]["/server/ca/switch"] = json!({"post": ca_switch.clone()});
    document["paths"]["/server/agreement-key"] = json!({"get": operation("agreement key rotation status: the current and next keys (SHA-256) and the agents that do not sign under the next one yet", None, "200")});
    document["paths"]["/server/agreement-key/rotate"] = json!({"post": operation("start an agreement key rotation: a next key, handed to every agent inside its signed settings; check-ins under either key are accepted (during a rotation: the same one handed out again, resent: true)", None, "200")});
    let mut key_switch = ca_switch;
    key_switch["summary"] = json!("finish an agreement key rotation: only the next key from then on; 409 would_cut_off (nothing changes) while agents still sign under the current one, unless accept_cut_off; dry_run plans only; 409 no_rotation");
    document["paths"]["/server/agreement-key/switch"] = json!({"post": key_switch.clone()});
    let mut ca_abort = key_switch.clone();
    ca_abort["summary"] = json!("give up a CA rotation: the next CA goes and every agent's settings carry the current one only (nothing served changes, so nobody can be cut off); dry_run only says so; 409 no_rotation");
    document["paths"]["/server/ca/abort"] = json!({"post": ca_abort});
    let mut key_abort = key_switch.clone();
    key_abort["summary"] = json!("give up an agreement key rotation: the next key is withdrawn (accepted, no longer handed out; agents are handed the current key again) and removed once no agent signs under it: 409 would_cut_off while some do, unless accept_cut_off; dry_run plans only; 409 no_rotation");
    document["paths"]["/server/agreement-key/abort"] = json!({"post": key_abort});
    let mut renew = key_switch;
    renew["summary"] = json!("re-issue the server certificates from ward's CA (the names they have) and reload, guarded like POST /server/reload: 409 would_cut_off unless accept_cut_off");
    renew["requestBody"]["content"]["application/json"]["schema"] =
        object(json!({"accept_cut_off": {"type": "boolean"}}), &[]);
    document["paths"]["/server/certificates/renew"] = json!({"post": renew});
    // Links from what creates a resource to what uses it, so a client (schemathesis's
    // stateful phase) can follow real ids.
    let body = |field: &str| format!("$response.body#/{field}");
    for (from, field, param, targets) in [
        (
            "/groups",
            "id",
            "id",
            &[
                ("/groups/{id}", "get"),
                ("/groups/{id}", "patch"),
                ("/groups/{id}/move", "post"),
                ("/groups/{id}", "delete"),
            ][..],
        ),
        (
            "/serverlists",
            "name",
            "name",
            &[
                ("/serverlists/{name}", "get"),
                ("/serverlists/{name}/copy", "post"),
                ("/serverlists/{name}", "delete"),
            ][..],
        ),
        (
            "/tokens",
            "id",
            "id",
            &[("/tokens/{id}/revoke", "post")][..],
        ),
        (
            "/accounts",
            "name",
            "name",
            &[
                ("/accounts/{name}/password", "post"),
                ("/accounts/{name}/disable", "post"),
                ("/accounts/{name}/enable", "post"),
                ("/accounts/{name}/revoke", "post"),
                ("/accounts/{name}", "delete"),
            ][..],
        ),
    ] {
        for (path, method) in targets {
            let id = operation_id(path, method);
            document["paths"][*path][*method]["operationId"] = json!(id);
            document["paths"][from]["post"]["responses"]["201"]["links"][&id] =
                json!({"operationId": id, "parameters": {param: body(field)}});
        }
    }
    document
}

/// `groups_id_patch` for `PATCH /groups/{id}`: a unique operation id from the path and method.
fn operation_id(path: &str, method: &str) -> String {
    let words: Vec<&str> = path
        .split(['/', '{', '}', '-'])
        .filter(|w| !w.is_empty())
        .collect();
    format!("{}_{method}", words.join("_"))
}

/// The methods the document lists for the admin API path `path` (`/api/v1/...`, as
/// requested), for the `Allow` header of a 405: `None` for a path it does not describe.
pub fn allowed_methods(path: &str) -> Option<String> {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let document = DOCUMENT.get_or_init(document);
    let relative = path.strip_prefix("/api/v1")?;
    let asked: Vec<&str> = relative.split('/').collect();
    let paths = document["paths"].as_object()?;
    let (_, operations) = paths.iter().find(|(template, _)| {
        let parts: Vec<&str> = template.split('/').collect();
        parts.len() == asked.len()
            && parts
                .iter()
                .zip(&asked)
                .all(|(part, asked)| part.starts_with('{') || part == asked)
    })?;
    let mut methods: Vec<String> = operations
        .as_object()?
        .keys()
        .map(|method| method.to_ascii_uppercase())
        .collect();
    if methods.iter().any(|m| m == "GET") {
        methods.push("HEAD".into());
    }
    Some(methods.join(", "))
}
