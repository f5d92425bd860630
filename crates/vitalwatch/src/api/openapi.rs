//! `GET /api/openapi.json`: the OpenAPI 3.1 contract, generated from the `#[utoipa::path]`
//! annotation above each handler (its parameters, bodies and answers) and from the route
//! table (the auth each route needs: one source, `api_routes()`). It is public: it describes
//! the API and holds no patient data, no configuration and no secrets.
//!
//! A test fails when a registered route is missing from the document (or the document names
//! a route that is not registered).

use super::AppState;
use crate::auth::Access;
use crate::auth::routes::RouteRule;
use axum::Json;
use axum::http::Method;
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{self, SecurityRequirement};

/// Every error: a stable code and a human sentence (never a rejected value).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code (`not_found`, `invalid_query`, `unauthenticated`, …).
    pub error: String,
    /// What was wrong and how to fix it.
    pub detail: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "VitalWatch API",
        description = "Vital-sign telemetry, devices, alerts, the dashboard's reads and FHIR R4. Errors are `{\"error\", \"detail\"}` (FHIR routes answer OperationOutcome). Authenticate with `Authorization: Bearer vw_…` or the dashboard's session cookie (state changes also need `X-CSRF-Token`).",
        license(name = "Apache-2.0")
    ),
    paths(
        super::health::health,
        super::health::ready,
        super::metrics::metrics,
        document,
        super::auth::login,
        super::auth::logout,
        super::auth::me,
        super::auth::change_own_password,
        super::telemetry::post_telemetry,
        super::devices::list_devices,
        super::devices::register_device,
        super::devices::get_device,
        super::devices::update_device,
        super::devices::deactivate_device,
        super::devices::device_readings,
        super::devices::revoke_device,
        super::devices::list_anomalies,
        super::model::reload,
        super::alerts::list_alerts,
        super::alerts::get_alert,
        super::alerts::acknowledge,
        super::alerts::silence,
        super::alerts::resolve,
        super::alerts::verdict,
        super::alerts::device_news2,
        super::alerts::get_thresholds,
        super::alerts::put_thresholds,
        super::alerts::delete_thresholds,
        super::alerts::preview_thresholds,
        super::alerts::webhook_deliveries,
        super::auth::list_tokens,
        super::auth::create_token,
        super::auth::revoke_token,
        super::auth::list_users,
        super::auth::create_user,
        super::auth::update_user,
        super::series::stats,
        super::series::series,
        super::series::latest,
        super::series::readings,
        super::series::readings_csv,
        super::series::ranges,
        super::fhir::metadata,
        super::fhir::search_observations,
        super::fhir::read_observation,
        super::fhir::search_devices,
        super::fhir::read_device,
        super::fhir::search_patients,
        super::fhir::read_patient,
        super::fhir::search_flags,
        super::fhir::read_flag,
        super::live::events,
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "operations", description = "Liveness, readiness, metrics and this document"),
        (name = "auth", description = "Login, sessions, tokens and users"),
        (name = "telemetry", description = "Posting readings"),
        (name = "devices", description = "The device registry and its readings"),
        (name = "alerts", description = "Alerts, thresholds and webhook deliveries"),
        (name = "dashboard", description = "The dashboard's reads"),
        (name = "model", description = "The anomaly model"),
        (name = "live", description = "The live event stream"),
        (name = "fhir", description = "Read-only FHIR R4"),
    )
)]
struct ApiDoc;

/// The security scheme names the document uses.
const BEARER: &str = "bearer";
const SESSION: &str = "session";

/// The document for a route table: the annotated operations, each given the security its
/// route's [`Access`] asks for.
pub fn build(table: &[RouteRule]) -> openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("vw_<id>_<secret>")
                .build(),
        ),
    );
    components.add_security_scheme(
        SESSION,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::auth::session::COOKIE,
            "The dashboard's login session (POST /auth/login).",
        ))),
    );
    for rule in table {
        let Some(item) = doc.paths.paths.get_mut(rule.path) else {
            continue;
        };
        let operation = match rule.method {
            Method::GET => item.get.as_mut(),
            Method::POST => item.post.as_mut(),
            Method::PUT => item.put.as_mut(),
            Method::DELETE => item.delete.as_mut(),
            _ => None,
        };
        if let Some(operation) = operation {
            operation.security = security(rule.access);
            let roles = describe_access(rule.access);
            operation.description = Some(match operation.description.take() {
                Some(text) => format!("{text}\n\nAccess: {roles}."),
                None => format!("Access: {roles}."),
            });
        }
    }
    doc
}

/// The security requirement of a route: public ones need none.
fn security(access: Access) -> Option<Vec<SecurityRequirement>> {
    let none: [&str; 0] = [];
    match access {
        Access::Public => Some(vec![SecurityRequirement::default()]),
        Access::Session => Some(vec![SecurityRequirement::new(SESSION, none)]),
        Access::Telemetry | Access::Metrics => Some(vec![SecurityRequirement::new(BEARER, none)]),
        Access::Authenticated | Access::Read | Access::Clinical | Access::Admin => Some(vec![
            SecurityRequirement::new(BEARER, none),
            SecurityRequirement::new(SESSION, none),
        ]),
    }
}

fn describe_access(access: Access) -> &'static str {
    match access {
        Access::Public => "public",
        Access::Authenticated => "any authenticated caller",
        Access::Session => "a signed-in dashboard user",
        Access::Read => "viewer, clinician or admin (audited as a patient-data read)",
        Access::Clinical => "clinician or admin",
        Access::Admin => "admin",
        Access::Telemetry => "a device token, for its own device id",
        Access::Metrics => "a metrics token, or admin",
    }
}

/// Every (method, path) the document describes.
pub fn operations(doc: &openapi::OpenApi) -> Vec<(Method, String)> {
    let mut found = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            (Method::GET, item.get.is_some()),
            (Method::POST, item.post.is_some()),
            (Method::PUT, item.put.is_some()),
            (Method::DELETE, item.delete.is_some()),
        ];
        for (method, present) in methods {
            if present {
                found.push((method, path.clone()));
            }
        }
    }
    found
}

static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();

/// The document of the API listener's routes (the dashboard's page routes are not API).
pub fn api_document() -> &'static serde_json::Value {
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(build(&super::route_table(false)))
            .expect("the OpenAPI document serialises");
        merge_closed_all_of(&mut doc);
        type_the_telemetry_body(&mut doc);
        doc
    })
}

/// `POST /api/telemetry` reads its body with the core decoder, not serde, so its schema is
/// built here from the same facts the decoder uses: the vitals table (keys, kinds,
/// plausibility bounds) and the default limits (device id, batch length).
fn type_the_telemetry_body(doc: &mut serde_json::Value) {
    use serde_json::{Map, Value, json};
    use vitalwatch_core::telemetry::{Limits, VITALS, VitalKind};
    let limits = Limits::default();
    let mut properties = Map::new();
    properties.insert(
        "device_id".into(),
        json!({"type": "string", "pattern": format!("^[A-Za-z0-9_.:-]{{1,{}}}$", limits.max_device_id_len)}),
    );
    properties.insert(
        "timestamp".into(),
        json!({"type": ["string", "number", "null"], "description": "RFC 3339, or seconds since the Unix epoch; the server's receipt time when absent"}),
    );
    for vital in &VITALS {
        let description = match vital.unit {
            "" => vital.label.to_owned(),
            unit => format!("{} ({unit})", vital.label),
        };
        let schema = match (vital.kind, vital.plausible) {
            (VitalKind::Number, Some(bounds)) => json!({
                "type": ["number", "null"], "minimum": bounds.min, "maximum": bounds.max,
                "description": description,
            }),
            (VitalKind::Number, None) => {
                json!({"type": ["number", "null"], "description": description})
            }
            (VitalKind::Acvpu, _) => json!({
                "type": ["string", "null"], "enum": ["A", "C", "V", "P", "U", null],
                "description": description,
            }),
            (VitalKind::Bool, _) => {
                json!({"type": ["boolean", "null"], "description": description})
            }
        };
        properties.insert(vital.key.into(), schema);
    }
    properties.insert(
        "seq".into(),
        json!({"type": ["integer", "null"], "minimum": 0, "description": "The device's own sequence number"}),
    );
    let reading = json!({
        "type": "object",
        "description": "One reading, the seed's JSON object (the extended vitals are optional)",
        "required": ["device_id"],
        "properties": Value::Object(properties),
    });
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("Reading".into(), reading);
    }
    let body = json!({"oneOf": [
        {"$ref": "#/components/schemas/Reading"},
        {"type": "array", "items": {"$ref": "#/components/schemas/Reading"}, "minItems": 1, "maxItems": limits.max_batch_len},
    ]});
    if let Some(media) =
        doc.pointer_mut("/paths/~1api~1telemetry/post/requestBody/content/application~1json")
    {
        media["schema"] = body;
    }
}

/// serde's `flatten` becomes an `allOf`; when a member is closed (`deny_unknown_fields`:
/// `additionalProperties: false`) it refuses the other members' properties, so no body could
/// satisfy it. Such a schema is merged into the one closed object serde actually reads.
fn merge_closed_all_of(doc: &mut serde_json::Value) {
    use serde_json::{Map, Value};
    let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let resolve = |member: &Value| -> Value {
        member
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .and_then(|name| schemas.get(name))
            .cloned()
            .unwrap_or_else(|| member.clone())
    };
    for (name, schema) in &schemas {
        let Some(members) = schema.get("allOf").and_then(Value::as_array) else {
            continue;
        };
        let members: Vec<Value> = members.iter().map(resolve).collect();
        if !members.iter().any(|m| m["additionalProperties"] == false) {
            continue;
        }
        let mut properties = Map::new();
        let mut required = Vec::new();
        for member in &members {
            if let Some(own) = member["properties"].as_object() {
                properties.extend(own.clone());
            }
            if let Some(own) = member["required"].as_array() {
                required.extend(own.iter().cloned());
            }
        }
        let mut merged = serde_json::json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        });
        if !required.is_empty() {
            merged["required"] = Value::Array(required);
        }
        if let Some(description) = schema.get("description") {
            merged["description"] = description.clone();
        }
        doc["components"]["schemas"][name] = merged;
    }
}

#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Value))
)]
pub async fn document(_state: axum::extract::State<AppState>) -> Json<serde_json::Value> {
    Json(api_document().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_registered_route_is_in_the_document_and_nothing_else() {
        let table = super::super::route_table(false);
        let doc = build(&table);
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(method, path)| (method.to_string(), path))
            .collect();
        let registered: BTreeSet<(String, String)> = table
            .iter()
            .map(|rule| (rule.method.to_string(), rule.path.to_owned()))
            .collect();
        let missing: Vec<_> = registered.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "routes missing from the OpenAPI document: {missing:?}"
        );
        let extra: Vec<_> = documented.difference(&registered).collect();
        assert!(extra.is_empty(), "documented but not registered: {extra:?}");
    }

    /// Every operation of the document, as (method, path, operation).
    fn each_operation(doc: &serde_json::Value) -> Vec<(String, String, &serde_json::Value)> {
        let mut found = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                found.push((method.clone(), path.clone(), operation));
            }
        }
        found
    }

    #[test]
    fn every_json_answer_has_a_schema_built_from_the_type_it_serialises() {
        let doc = api_document();
        let mut untyped = Vec::new();
        for (method, path, operation) in each_operation(doc) {
            if path == "/api/openapi.json" {
                continue;
            }
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let Some(content) = response["content"].as_object() else {
                    continue;
                };
                for (media, body) in content {
                    let schema = &body["schema"];
                    let typed = schema.get("$ref").is_some()
                        || schema.get("type").is_some()
                        || schema.get("oneOf").is_some();
                    // FHIR resources are the FHIR R4 specification's (fhir+json), not ours.
                    if !typed && !media.contains("fhir") {
                        untyped.push(format!("{method} {path} {status} {media}"));
                    }
                }
            }
        }
        assert!(untyped.is_empty(), "answers without a schema: {untyped:?}");
    }

    #[test]
    fn the_telemetry_body_is_typed_from_the_vitals_table() {
        let doc = api_document();
        let body = doc
            .pointer("/paths/~1api~1telemetry/post/requestBody/content/application~1json/schema")
            .expect("a telemetry body schema");
        assert_eq!(body["oneOf"][0]["$ref"], "#/components/schemas/Reading");
        let reading = &doc["components"]["schemas"]["Reading"]["properties"];
        for vital in &vitalwatch_core::telemetry::VITALS {
            assert!(reading.get(vital.key).is_some(), "{} missing", vital.key);
            if let Some(bounds) = vital.plausible {
                assert_eq!(reading[vital.key]["maximum"].as_f64(), Some(bounds.max));
            }
        }
        assert_eq!(
            body["oneOf"][1]["maxItems"].as_u64(),
            Some(vitalwatch_core::telemetry::Limits::default().max_batch_len as u64)
        );
    }

    #[test]
    fn declared_query_limits_match_the_parser() {
        let doc = api_document();
        let expected_pattern = format!(
            "^[A-Za-z0-9_.:-]{{1,{}}}$",
            vitalwatch_core::telemetry::Limits::default().max_device_id_len
        );
        let mut limits = 0;
        for (method, path, operation) in each_operation(doc) {
            for param in operation["parameters"].as_array().into_iter().flatten() {
                let name = param["name"].as_str().unwrap_or_default();
                let schema = &param["schema"];
                if name == "limit" {
                    limits += 1;
                    assert_eq!(
                        schema["maximum"].as_f64(),
                        Some(super::super::query::MAX_LIMIT as f64),
                        "{method} {path}"
                    );
                }
                if let Some(pattern) = schema["pattern"].as_str()
                    && pattern.starts_with("^[A-Za-z0-9")
                {
                    assert_eq!(pattern, expected_pattern, "{method} {path} {name}");
                }
            }
        }
        assert!(limits >= 5, "the paged routes declare `limit`: {limits}");
    }

    #[test]
    fn a_flattened_closed_body_is_one_closed_object() {
        let body = &api_document()["components"]["schemas"]["ThresholdsBody"];
        assert!(body.get("allOf").is_none(), "{body}");
        assert_eq!(body["additionalProperties"], false);
        for field in ["heart_rate_max", "spo2_scale", "author", "reason"] {
            assert!(body["properties"].get(field).is_some(), "{field}: {body}");
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_the_route_tables_auth() {
        let doc = api_document();
        assert_eq!(doc["openapi"], "3.1.0");
        let health = &doc["paths"]["/health"]["get"];
        assert_eq!(health["security"], serde_json::json!([{}]), "{health}");
        let metrics = &doc["paths"]["/metrics"]["get"];
        assert_eq!(metrics["security"], serde_json::json!([{ "bearer": [] }]));
    }
}
