//! The OpenAPI 3.1 document of the admin API, made from the route table and the types' own
//! JSON Schemas (schemars, JSON Schema 2020-12): served at `/api/v1/openapi.json`.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::routes::{Access, Body, ROUTES};

/// The statuses every operation may answer besides its success, each with the error shape.
const ERROR_STATUSES: [&str; 11] = [
    "400", "401", "403", "404", "405", "408", "409", "413", "422", "429", "503",
];

/// `groups_id_patch` for `PATCH /groups/{id}`: a unique operation id from the path and method.
pub fn operation_id(path: &str, method: &str) -> String {
    let words: Vec<&str> = path
        .split(['/', '{', '}', '-', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    format!("{}_{}", words.join("_"), method.to_ascii_lowercase())
}

/// The document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    let mut paths = Map::new();
    for route in ROUTES {
        let mut operation = Map::new();
        operation.insert(
            "operationId".into(),
            json!(operation_id(route.path, route.method)),
        );
        operation.insert("summary".into(), json!(route.summary));
        if route.access == Access::Public {
            operation.insert("security".into(), json!([]));
        }
        let mut parameters: Vec<Value> = route
            .params
            .iter()
            .map(|(name, schema)| {
                json!({"name": name, "in": "path", "required": true, "schema": schema(&mut generator)})
            })
            .collect();
        if let Some(query) = route.query {
            let schema = query(&mut generator);
            let resolved = resolve(&generator, schema.as_value());
            let properties = resolved["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (name, schema) in properties {
                let description = schema["description"].clone();
                parameters.push(json!({
                    "name": name,
                    "in": "query",
                    "required": false,
                    "schema": schema,
                    "description": description,
                }));
            }
        }
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        let body = match route.body {
            Body::None => None,
            Body::Optional(schema) => Some((false, schema)),
            Body::Required(schema) => Some((true, schema)),
        };
        if let Some((required, schema)) = body {
            operation.insert(
                "requestBody".into(),
                json!({
                    "required": required,
                    "content": {"application/json": {"schema": schema(&mut generator)}},
                }),
            );
        }
        let mut responses = Map::new();
        responses.insert(
            route.ok.to_string(),
            json!({
                "description": "success",
                "content": {"application/json": {"schema": (route.answer)(&mut generator)}},
            }),
        );
        for status in ERROR_STATUSES {
            responses.insert(
                status.into(),
                json!({"$ref": "#/components/responses/Error"}),
            );
        }
        operation.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = Value::Object(operation);
    }
    add_links(&mut paths);
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ward admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Served on the console listener only. Every path but /login and this \
                            document needs 'Authorization: Bearer TOKEN' (the local admin token \
                            or a login session); the auditor role may only read (and plan). \
                            Formats named ward-* and the TLS ones are described where they are \
                            used.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "refused, with a stable code and a sentence (a guard's \
                                    refusal also carries its plan)",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {
                            "error": {
                                "type": "object",
                                "properties": {
                                    "code": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                                "required": ["code", "message"],
                            },
                        },
                        "required": ["error"],
                    }}},
                },
            },
        },
    })
}

/// A schema with its `$ref` to the components followed (the query types' properties).
fn resolve(generator: &schemars::SchemaGenerator, schema: &Value) -> Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or_default();
            generator
                .definitions()
                .get(name)
                .cloned()
                .unwrap_or(Value::Null)
        }
        None => schema.clone(),
    }
}

/// Links from what creates a resource to what uses its id (for clients that follow them,
/// such as schemathesis's stateful phase).
/// A creating path, the answer's field holding the id, the parameter it fills, and the
/// (path, method) pairs that take it.
type Link = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

fn add_links(paths: &mut Map<String, Value>) {
    let links: [Link; 4] = [
        (
            "/groups",
            "id",
            "id",
            &[
                ("/groups/{id}", "get"),
                ("/groups/{id}", "patch"),
                ("/groups/{id}/move", "post"),
                ("/groups/{id}/export", "post"),
                ("/groups/{id}", "delete"),
            ],
        ),
        (
            "/serverlists",
            "name",
            "name",
            &[
                ("/serverlists/{name}", "get"),
                ("/serverlists/{name}/copy", "post"),
                ("/serverlists/{name}", "delete"),
            ],
        ),
        ("/tokens", "id", "id", &[("/tokens/{id}/revoke", "post")]),
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
            ],
        ),
    ];
    for (from, field, param, targets) in links {
        for (path, method) in targets {
            let id = operation_id(path, method);
            paths[from]["post"]["responses"]["201"]["links"][&id] = json!({
                "operationId": id,
                "parameters": {param: format!("$response.body#/{field}")},
            });
        }
    }
}
