//! The OpenAPI document (`/openapi.json`) against the routes the service
//! really has, and the API page (`/docs`) people read.

use std::collections::BTreeSet;

use media_e2e::{BackendSet, TestApp, header};

/// The routes of the service's router, `(METHOD, path)`, read from the
/// router itself (axum shows its path table and each path's methods in its
/// `Debug` form; nothing else lists them).
fn routes_of(router: &impl std::fmt::Debug) -> BTreeSet<(String, String)> {
    let text = format!("{router:?}");
    // The router's own table; its fallbacks come after.
    let table = text
        .split(", fallback_router:")
        .next()
        .expect("a path router");
    let paths_at = table.find("paths: {").expect("the path table");
    let (routes, paths) = table.split_at(paths_at);
    let mut path_of = std::collections::HashMap::new();
    for entry in paths.split("RouteId(").skip(1) {
        let (id, rest) = entry.split_once("): \"").expect("a path entry");
        let path = rest.split('"').next().expect("a path");
        path_of.insert(id.to_owned(), path.replace("{*", "{"));
    }
    let mut found = BTreeSet::new();
    for entry in routes.split("RouteId(").skip(1) {
        let (id, rest) = entry.split_once(')').expect("a route entry");
        let path = path_of
            .get(id)
            .unwrap_or_else(|| panic!("route {id} has no path in {table}"));
        let methods = rest
            .split_once("MethodRouter { ")
            .map(|(_, m)| m)
            .unwrap_or_else(|| panic!("route {path} is not a method router: {rest}"));
        for method in [
            "get", "head", "delete", "options", "patch", "post", "put", "trace",
        ] {
            let field = format!("{method}: ");
            let at = methods
                .find(&field)
                .unwrap_or_else(|| panic!("no {method} in {methods}"));
            if !methods[at + field.len()..].starts_with("None") {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(
        found.len() > 40,
        "the router's table could not be read ({} routes): {table}",
        found.len()
    );
    found
}

/// The service's OpenAPI document, from the service at `base`.
pub(crate) async fn document(client: &reqwest::Client, base: &str) -> serde_json::Value {
    client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("openapi.json")
        .json()
        .await
        .expect("json")
}

/// The operations the document describes, `(METHOD, path)`.
pub(crate) fn described(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if [
                "get", "head", "delete", "options", "patch", "post", "put", "trace",
            ]
            .contains(&method.as_str())
            {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

#[tokio::test]
async fn the_document_describes_every_route_and_no_other() {
    let app = TestApp::spawn(BackendSet::Embedded).await;
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("openapi.json");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/json");
    let doc: serde_json::Value = r.json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let router = media_api::http::router(app.state.clone());
    let routes = routes_of(&router);
    let described = described(&doc);
    let undescribed: Vec<_> = routes.difference(&described).collect();
    let unrouted: Vec<_> = described.difference(&routes).collect();
    assert!(
        undescribed.is_empty() && unrouted.is_empty(),
        "routes the document does not describe: {undescribed:?}; \
         operations no route serves: {unrouted:?}"
    );
    // Each operation: at least one success, its problems as problem+json
    // with their codes, the token it needs.
    for (method, path) in &described {
        let op = &doc["paths"][path][method.to_lowercase()];
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses
                .keys()
                .any(|s| s.starts_with('2') || s.starts_with('3') || s == "101"),
            "{method} {path}: no success is described"
        );
        for (status, response) in responses {
            if !status.starts_with('4') && !status.starts_with('5') {
                continue;
            }
            let codes = response
                .pointer("/content/application~1problem+json/schema/allOf/1/properties/code/enum")
                .and_then(|c| c.as_array())
                .unwrap_or_else(|| panic!("{method} {path} {status}: no problem codes"));
            assert!(!codes.is_empty(), "{method} {path} {status}");
        }
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        if path.starts_with("/v1/") && method != "OPTIONS" {
            assert!(secured, "{method} {path} needs a token but does not say so");
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // The limits in force are in the document.
    let limits = &app.state.settings.limits;
    let description = doc["info"]["description"].as_str().expect("description");
    for limit in [
        limits.max_file_size.0,
        limits.max_single_upload.0,
        limits.max_json_body.0,
    ] {
        assert!(description.contains(&limit.to_string()), "{limit} missing");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_api_page_is_the_services_own_and_loads_nothing_from_elsewhere() {
    let app = TestApp::spawn(BackendSet::Embedded).await;
    let r = app.client.get(app.url("/docs")).send().await.expect("docs");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    assert!(
        header(&r, "content-security-policy").starts_with("default-src 'none'"),
        "the page may load from other hosts"
    );
    let page = r.text().await.expect("page");
    assert!(!page.contains("<script"), "a script in the page");
    for attribute in ["src=", "href=\"http", "href=\"//", "@import", "url("] {
        assert!(!page.contains(attribute), "{attribute} in the page");
    }
    let doc = document(&app.client, &app.url("")).await;
    for path in doc["paths"].as_object().expect("paths").keys() {
        let shown = path.replace('&', "&amp;").replace('<', "&lt;");
        assert!(
            page.contains(&format!("<code>{shown}</code>")),
            "{path} is not on the page"
        );
    }
    for schema in doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
    {
        assert!(
            page.contains(&format!("id=\"schema-{schema}\"")),
            "{schema} is not on the page"
        );
    }
    app.stop().await;
}
