//! `/openapi.json` and `/docs`: the API description, and the same as a page
//! rendered here from it (no script, no asset fetched from anywhere).

use serde_json::Value;

/// The OpenAPI 3.1 document. Tests check it against the running server.
pub const OPENAPI: &str = include_str!("../assets/openapi.json");

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn schema_name(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("<a href=\"#schema-{name}\">{name}</a>");
    }
    if let Some(items) = schema.get("items") {
        return format!("array of {}", schema_name(items));
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return options.iter().map(|o| format!("<code>{}</code>", escape(&o.to_string()))).collect::<Vec<_>>().join(" | ");
    }
    if let Some(constant) = schema.get("const") {
        return format!("<code>{}</code>", escape(&constant.to_string()));
    }
    match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or "),
        _ if schema.get("oneOf").is_some() => {
            schema["oneOf"].as_array().map(|o| o.iter().map(schema_name).collect::<Vec<_>>().join(" or ")).unwrap_or_default()
        }
        _ => "object".into(),
    }
}

/// The docs page.
pub fn page() -> String {
    let doc: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is valid JSON");
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>rollover API</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem}\
         code{background:#f3f3f3;padding:0 .2em}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3em;text-align:left;vertical-align:top}td{overflow-wrap:anywhere}\
         h3{margin-top:2rem;font-family:monospace}.method{font-weight:bold;text-transform:uppercase}</style></head><body>",
    );
    html.push_str(&format!("<h1>{}</h1><p>{}</p>", escape(doc["info"]["title"].as_str().unwrap_or("API")), escape(doc["info"]["description"].as_str().unwrap_or(""))));
    html.push_str("<p>The machine-readable description is at <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1).</p><h2>Endpoints</h2>");
    if let Some(paths) = doc["paths"].as_object() {
        // The API first, then health, metrics and this description.
        let mut ordered: Vec<(&String, &Value)> = paths.iter().collect();
        ordered.sort_by_key(|(path, _)| (!path.starts_with("/v1/"), path.starts_with("/v1/clock")));
        for (path, operations) in ordered {
            for (method, operation) in operations.as_object().into_iter().flatten() {
                html.push_str(&format!("<h3><span class=\"method\">{}</span> {}</h3>", escape(method), escape(path)));
                html.push_str(&format!("<p><strong>{}</strong></p>", escape(operation["summary"].as_str().unwrap_or(""))));
                if let Some(description) = operation["description"].as_str() {
                    html.push_str(&format!("<p>{}</p>", escape(description)));
                }
                if let Some(parameters) = operation["parameters"].as_array() {
                    html.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th>about</th></tr>");
                    for p in parameters {
                        html.push_str(&format!(
                            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                            escape(p["name"].as_str().unwrap_or("")),
                            escape(p["in"].as_str().unwrap_or("")),
                            schema_name(&p["schema"]),
                            escape(p["description"].as_str().unwrap_or(""))
                        ));
                    }
                    html.push_str("</table>");
                }
                if let Some(content) = operation["requestBody"]["content"].as_object() {
                    for (media, body) in content {
                        html.push_str(&format!("<p>Body ({}): {}</p>", escape(media), schema_name(&body["schema"])));
                    }
                }
                html.push_str("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>");
                for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                    let body = response["content"].as_object().and_then(|c| c.values().next()).map(|c| schema_name(&c["schema"])).unwrap_or_default();
                    html.push_str(&format!("<tr><td>{status}</td><td>{}</td><td>{body}</td></tr>", escape(response["description"].as_str().unwrap_or(""))));
                }
                html.push_str("</table>");
            }
        }
    }
    html.push_str("<h2>Schemas</h2>");
    for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
        html.push_str(&format!("<h3 id=\"schema-{name}\">{name}</h3>"));
        if let Some(description) = schema["description"].as_str() {
            html.push_str(&format!("<p>{}</p>", escape(description)));
        }
        let required: Vec<&str> = schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        if let Some(properties) = schema["properties"].as_object() {
            html.push_str("<table><tr><th>field</th><th>type</th><th>required</th><th>about</th></tr>");
            for (field, property) in properties {
                html.push_str(&format!(
                    "<tr><td><code>{field}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    schema_name(property),
                    if required.contains(&field.as_str()) { "yes" } else { "" },
                    escape(property["description"].as_str().unwrap_or(""))
                ));
            }
            html.push_str("</table>");
        }
    }
    html.push_str("</body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let text = OPENAPI;
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "unresolved $ref {name}");
        }
        let page = page();
        assert!(page.contains("<h3><span class=\"method\">post</span> /v1/usage</h3>"));
        assert!(page.contains("id=\"schema-Balance\""));
    }
}
