//! The OpenAPI document is the contract: the README's example is its example, the real server
//! accepts it, and the server's answers match the documented schemas.

use serde_json::{Value, json};

use crate::support::{Api, expect_status};

fn document() -> Value {
    serde_json::from_str(include_str!("../../openapi.json")).unwrap()
}

/// A validator for `components/schemas/{name}` of the document.
fn validator(document: &Value, name: &str) -> jsonschema::Validator {
    let mut schema = json!({ "$ref": format!("#/components/schemas/{name}") });
    schema["components"] = document["components"].clone();
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{instance} does not match: {errors:?}");
}

/// The JSON between the README's `<<'JSON'` heredoc and its `JSON` terminator.
fn readme_example() -> Value {
    let readme = include_str!("../../../README.md");
    let start = readme.find("<<'JSON'\n").unwrap() + "<<'JSON'\n".len();
    let end = start + readme[start..].find("\nJSON\n").unwrap();
    serde_json::from_str(&readme[start..end]).unwrap()
}

#[tokio::test]
async fn the_readme_example_is_the_documented_example_and_the_server_accepts_it() {
    let document = document();
    let example = &document["paths"]["/v1/uploads"]["post"]["requestBody"]["content"]["application/json"]
        ["examples"]["blood_pressure"]["value"];
    assert_eq!(&readme_example(), example);
    assert_valid(&validator(&document, "Upload"), example);

    let api = Api::start().await;
    let token = api.device("Docs Clinic").await;
    let created = expect_status(api.post(&token, example).await, 201).await;
    assert_valid(&validator(&document, "UploadResult"), &created);
    let replayed = expect_status(api.post(&token, example).await, 200).await;
    assert_eq!(replayed, created);

    let status = api
        .http
        .get(format!(
            "{}/v1/uploads/{}",
            api.base,
            example["upload_id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_valid(
        &validator(&document, "UploadStatus"),
        &expect_status(status, 200).await,
    );

    let mut invalid = example.clone();
    invalid["checkups"][0]["reports"][0]["measurements"][0]["unit"] = json!("kPa");
    let problem = expect_status(api.post(&token, &invalid).await, 422).await;
    assert_valid(&validator(&document, "Problem"), &problem);
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let document = document();
    let api = Api::start().await;
    let id = uuid::Uuid::new_v4();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let url = format!("{}{}", api.base, path.replace("{id}", &id.to_string()));
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = api.http.request(method.clone(), url).send().await.unwrap();
            // Without a token every operation answers 401; an unserved one would be 404/405.
            assert_eq!(response.status(), 401, "{method} {path}");
        }
    }
}
