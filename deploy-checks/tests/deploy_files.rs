//! What can be checked of `deploy/` without a Docker engine or a Kubernetes cluster: the files
//! parse; every alert has a unit test that fires it and one that does not; every `MYHEALTH_`
//! variable given to a service is one its `Config` reads, and the whole environment loads; the
//! image is built with `make release`'s command; probes, resources, grace periods, replicas
//! and disruption budgets are as the operations guide says; the compose healthcheck works
//! against a real service.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use deploy_checks::deploy_dir;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_norway::Value;
use service_plumbing::config::load_from_vars;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// One YAML document, with `<<` merge keys applied.
fn yaml(path: &Path) -> Value {
    let mut value: Value = serde_norway::from_str(&read(path))
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    value.apply_merge().unwrap();
    value
}

/// Every document of a multi-document YAML file.
fn yaml_documents(path: &Path) -> Vec<Value> {
    serde_norway::Deserializer::from_str(&read(path))
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        })
        .collect()
}

fn str_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

// --- alert rules ---------------------------------------------------------------------------------

#[test]
fn every_alert_has_a_test_that_fires_it_and_one_that_does_not() {
    let rules = yaml(&deploy_dir().join("prometheus/rules/myhealth.yml"));
    let alerts: BTreeSet<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap())
        .filter_map(|rule| rule["alert"].as_str().map(str::to_string))
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");

    let tests = yaml(&deploy_dir().join("prometheus/tests/myhealth.test.yml"));
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in tests["tests"].as_sequence().unwrap() {
        for check in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = check["alertname"].as_str().unwrap().to_string();
            let expected = check["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected > 0 {
                firing.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let untested: Vec<_> = alerts
        .iter()
        .filter(|alert| !firing.contains(*alert) || !quiet.contains(*alert))
        .collect();
    assert!(
        untested.is_empty(),
        "alerts without both a firing and a quiet test: {untested:?}"
    );
    for rule in rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap())
    {
        let runbook = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        let anchor = runbook
            .strip_prefix("docs/operations.md#")
            .unwrap_or_else(|| panic!("{:?} has no runbook link", rule["alert"]));
        assert!(
            runbook_anchors().contains(anchor),
            "{runbook} is not a heading of docs/operations.md"
        );
    }
}

/// GitHub-style anchors of the headings of docs/operations.md.
fn runbook_anchors() -> BTreeSet<String> {
    read(&deploy_dir().join("../docs/operations.md"))
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| {
            heading
                .trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

// --- service configuration ----------------------------------------------------------------------

/// The `MYHEALTH_` keys of `vars` that `T` does not read (serde ignored them), after loading
/// them the way the services do.
fn unread_keys<T: DeserializeOwned>(vars: &HashMap<String, String>) -> Vec<String> {
    let environment = config::Environment::with_prefix(service_plumbing::config::ENV_PREFIX)
        .prefix_separator("_")
        .separator(service_plumbing::config::ENV_NESTING_SEPARATOR)
        .ignore_empty(true)
        .source(Some(vars.clone()));
    let merged = config::Config::builder()
        .add_source(environment)
        .build()
        .unwrap();
    let mut ignored = Vec::new();
    let _: T = serde_ignored::deserialize(merged, |path| ignored.push(path.to_string()))
        .unwrap_or_else(|error| panic!("{vars:?} does not load: {error}"));
    ignored
}

/// The `MYHEALTH_` keys of `env` that `service` reads (fields of its `Config`), after checking
/// that the whole environment loads the way the binary loads it.
fn keys_read(service: &str, env: &HashMap<String, String>) -> BTreeSet<String> {
    let vars: HashMap<String, String> = env
        .iter()
        .filter(|(key, _)| key.starts_with("MYHEALTH_"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let (unread, loaded) = match service {
        "ingest-api" => (
            unread_keys::<ingest_api::Config>(&vars),
            load_from_vars::<ingest_api::Config>(None, vars.clone()).map(drop),
        ),
        "reports-api" => (
            unread_keys::<reports_api::Config>(&vars),
            load_from_vars::<reports_api::Config>(None, vars.clone()).map(drop),
        ),
        "cdc-daemon" => (
            unread_keys::<cdc_daemon::Config>(&vars),
            load_from_vars::<cdc_daemon::Config>(None, vars.clone()).map(drop),
        ),
        // sql/src/bin/myhealth-migrate.rs reads this one variable.
        "myhealth-migrate" => {
            return vars
                .into_keys()
                .filter(|key| key == "MYHEALTH_DATABASE_URL")
                .collect();
        }
        other => panic!("unknown service {other}"),
    };
    if let Err(error) = loaded {
        panic!("{service}'s environment does not load: {error:?}");
    }
    vars.into_keys()
        .filter(|key| {
            let path = key["MYHEALTH_".len()..].to_lowercase().replace("__", ".");
            !unread.contains(&path)
        })
        .collect()
}

/// Compose's `${NAME:-default}` interpolation, with the defaults.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

// --- compose ----------------------------------------------------------------------------------------

#[test]
fn compose_file_runs_the_pipeline_with_the_environment_the_binaries_read() {
    let compose = yaml(&deploy_dir().join("docker-compose.yml"));
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    for expected in [
        "postgres",
        "mongodb",
        "migrate",
        "ingest-api",
        "cdc-daemon",
        "reports-api",
        "prometheus",
        "grafana",
    ] {
        assert!(
            names.contains(expected),
            "no {expected} service in {names:?}"
        );
    }

    let postgres = &compose["services"]["postgres"];
    assert!(
        postgres["image"]
            .as_str()
            .unwrap()
            .starts_with("postgres:16")
    );
    let command: Vec<String> = postgres["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert!(
        command.contains(&"wal_level=logical".to_string()),
        "{command:?}"
    );
    let mongodb = &compose["services"]["mongodb"];
    assert!(mongodb["image"].as_str().unwrap().starts_with("mongo:7"));
    assert!(str_of(&mongodb["healthcheck"]["test"][4]).contains("rs.initiate"));

    for (service, binary) in [
        ("migrate", "myhealth-migrate"),
        ("ingest-api", "ingest-api"),
        ("cdc-daemon", "cdc-daemon"),
        ("reports-api", "reports-api"),
    ] {
        let spec = &compose["services"][service];
        assert_eq!(
            spec["build"]["dockerfile"].as_str(),
            Some("deploy/Dockerfile")
        );
        assert_eq!(str_of(&spec["command"][0]), binary);
        let env: HashMap<String, String> = spec["environment"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(key, value)| (str_of(key), interpolate(&str_of(value))))
            .collect();
        let read = keys_read(binary, &env);
        for key in env.keys() {
            assert!(
                key == "RUST_LOG" || read.contains(key),
                "{service}: {binary} does not read {key} (its Config has no such field)"
            );
        }
        if service == "migrate" {
            assert_eq!(spec["restart"].as_str(), Some("no"));
            continue;
        }
        assert_eq!(
            spec["depends_on"]["migrate"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{service} must start after the migrations"
        );
        let listen = &env["MYHEALTH_HTTP__LISTEN"];
        let port = listen.rsplit(':').next().unwrap();
        let check = str_of(&spec["healthcheck"]["test"][3]);
        assert!(
            check.contains(&format!("/dev/tcp/127.0.0.1/{port} ")) && check.contains("/readyz"),
            "{service}'s healthcheck does not ask its /readyz on {port}: {check}"
        );
    }

    // Everything compose mounts or builds from is in the repository.
    for relative in [
        "grafana/provisioning/datasources",
        "grafana/provisioning/dashboards",
        "grafana/dashboards",
        "prometheus/Dockerfile",
        "prometheus/prometheus.yml",
    ] {
        assert!(
            deploy_dir().join(relative).exists(),
            "deploy/{relative} is missing"
        );
    }
    let prometheus = yaml(&deploy_dir().join("prometheus/prometheus.yml"));
    let jobs: BTreeSet<&str> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|job| job["job_name"].as_str())
        .collect();
    assert_eq!(
        jobs,
        BTreeSet::from(["cdc-daemon", "ingest-api", "reports-api"]),
        "the rules and dashboards select on these job names"
    );
}

#[test]
fn grafana_dashboard_has_the_console_panels_on_the_provisioned_datasource() {
    let dashboard: serde_json::Value = serde_json::from_str(&read(
        &deploy_dir().join("grafana/dashboards/replication.json"),
    ))
    .unwrap();
    let datasources = yaml(&deploy_dir().join("grafana/provisioning/datasources/prometheus.yml"));
    let uid = datasources["datasources"][0]["uid"].as_str().unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels {
        assert_eq!(
            panel["datasource"]["uid"].as_str(),
            Some(uid),
            "{}",
            panel["title"]
        );
    }
    let grafana: BTreeSet<&str> = panels
        .iter()
        .filter_map(|panel| panel["title"].as_str())
        .collect();
    let console = read(&deploy_dir().join("prometheus/consoles/replication.html"));
    let titles: BTreeSet<&str> = console
        .split("<h2>")
        .skip(1)
        .filter_map(|rest| rest.split("</h2>").next())
        .collect();
    assert!(titles.len() >= 10, "{titles:?}");
    assert_eq!(grafana, titles, "the two dashboards show different panels");
    // Grafana's queries are the console's, with PromQL's double quotes for single ones.
    let console_exprs: BTreeSet<String> = deploy_checks::console_expressions(&console)
        .into_iter()
        .map(|expr| expr.replace('\'', "\""))
        .collect();
    for expr in deploy_checks::grafana_expressions(&dashboard) {
        assert!(
            console_exprs.contains(&expr),
            "not on the console dashboard: {expr}"
        );
    }
}

// --- Dockerfile ---------------------------------------------------------------------------------------

#[test]
fn image_is_built_with_make_release_command_as_non_root_in_a_slim_stage() {
    let dockerfile = read(&deploy_dir().join("Dockerfile"));
    let makefile = read(&deploy_dir().join("../Makefile"));
    let release = makefile
        .split("\nrelease:")
        .nth(1)
        .and_then(|recipe| recipe.lines().nth(1))
        .expect("the Makefile has no release target")
        .trim()
        .replace("$(CARGO)", "cargo");
    let build = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("RUN cargo build"))
        .map(|rest| format!("cargo build{}", rest.trim_end_matches('\\').trim_end()))
        .expect("the Dockerfile runs no cargo build");
    assert_eq!(
        build, release,
        "the image and `make release` build differently"
    );

    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[1].contains("-slim"), "{stages:?}");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the image runs as root");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    for binary in [
        "ingest-api",
        "reports-api",
        "cdc-daemon",
        "myhealth-migrate",
    ] {
        assert!(
            dockerfile.contains(&format!("target/release/{binary}")),
            "the image lacks {binary}"
        );
    }
}

// --- Kubernetes ---------------------------------------------------------------------------------------

#[test]
fn kubernetes_manifests_probe_budget_and_configure_the_services() {
    let dir = deploy_dir().join("k8s");
    let mut objects = Vec::new();
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let mut files: Vec<String> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    files.push("migrate-job.yaml".to_string());
    for file in &files {
        objects.extend(yaml_documents(&dir.join(file)));
    }
    let of_kind = |kind: &str| -> Vec<&Value> {
        objects
            .iter()
            .filter(|object| object["kind"].as_str() == Some(kind))
            .collect()
    };
    // (object name, key, value) of every ConfigMap's or Secret's entries.
    let data = |kind: &str, field: &str| -> Vec<(String, String, String)> {
        of_kind(kind)
            .into_iter()
            .flat_map(|object| {
                let name = str_of(&object["metadata"]["name"]);
                object[field]
                    .as_mapping()
                    .unwrap()
                    .iter()
                    .map(move |(key, value)| (name.clone(), str_of(key), str_of(value)))
            })
            .collect()
    };
    let config_maps = data("ConfigMap", "data");
    let secrets = data("Secret", "stringData");

    let mut shared_keys_read = BTreeSet::new();
    let deployments = of_kind("Deployment");
    assert_eq!(deployments.len(), 3);
    for deployment in &deployments {
        let name = str_of(&deployment["metadata"]["name"]);
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(str_of(&container["command"][0]), name);
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz"),
            "{name}"
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz"),
            "{name}"
        );
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"]["requests"][resource]
                    .as_str()
                    .is_some(),
                "{name} requests no {resource}"
            );
        }
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));

        // The environment as the pod gets it: ConfigMap and Secret, then the container's own.
        let mut env = HashMap::new();
        for source in container["envFrom"].as_sequence().unwrap() {
            let (table, reference) = if let Some(reference) = source.get("configMapRef") {
                (&config_maps, reference)
            } else {
                (&secrets, &source["secretRef"])
            };
            let wanted = str_of(&reference["name"]);
            let before = env.len();
            for (owner, key, value) in table {
                if *owner == wanted {
                    env.insert(key.clone(), k8s_placeholder(key, value));
                }
            }
            assert!(env.len() > before, "{name} refers to a missing {wanted}");
        }
        let own: Vec<String> = container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|var| {
                let key = str_of(&var["name"]);
                env.insert(key.clone(), str_of(&var["value"]));
                key
            })
            .collect();
        let read = keys_read(&name, &env);
        for key in own {
            assert!(read.contains(&key), "{name} does not read its own {key}");
        }
        shared_keys_read.extend(read);

        let deadline_ms: u64 = env["MYHEALTH_HTTP__SHUTDOWN_DEADLINE_MS"].parse().unwrap();
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace * 1000 > deadline_ms + 5_000,
            "{name}: {grace} s of grace does not cover the {deadline_ms} ms shutdown deadline"
        );
        if name == "cdc-daemon" {
            assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2));
        }
        let budget = of_kind("PodDisruptionBudget").into_iter().find(|budget| {
            budget["spec"]["selector"]["matchLabels"]
                == deployment["spec"]["selector"]["matchLabels"]
        });
        assert!(budget.is_some(), "{name} has no PodDisruptionBudget");
    }
    for (owner, key, _) in config_maps.iter().chain(&secrets) {
        // The migration Job's Secret is checked with the Job below.
        assert!(
            owner == "myhealth-migrate-secrets"
                || shared_keys_read.contains(key)
                || key == "RUST_LOG",
            "{key} of {owner} is read by no service"
        );
    }

    let job = of_kind("Job");
    assert_eq!(job.len(), 1);
    let container = &job[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(str_of(&container["command"][0]), "myhealth-migrate");
    let secret = str_of(&container["envFrom"][0]["secretRef"]["name"]);
    let env: HashMap<String, String> = secrets
        .iter()
        .filter(|(owner, _, _)| *owner == secret)
        .map(|(_, key, value)| (key.clone(), value.clone()))
        .collect();
    assert_eq!(
        keys_read("myhealth-migrate", &env),
        env.keys().cloned().collect(),
        "the migration Job's environment"
    );
}

/// A usable value for a Secret placeholder: the reports API parses its public key at start.
fn k8s_placeholder(key: &str, value: &str) -> String {
    if key == "MYHEALTH_AUTH__PUBLIC_KEY_PEM" {
        read(&deploy_dir().join("../reports-api/tests/keys/ed25519-public.pem"))
    } else {
        value.to_string()
    }
}

// --- the compose healthcheck against a real service ---------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn compose_healthcheck_command_passes_on_a_ready_service_and_fails_on_a_closed_port() {
    let ctx = devstack::TestContext::new().await.unwrap();
    let config: ingest_api::Config = load_from_vars(
        None,
        HashMap::from([
            (
                "MYHEALTH_HTTP__LISTEN".to_string(),
                "127.0.0.1:0".to_string(),
            ),
            (
                "MYHEALTH_DATABASE_URL".to_string(),
                ctx.database_url.clone(),
            ),
        ]),
    )
    .unwrap();
    let app = ingest_api::build(config).await.unwrap();
    let port = app.local_addr().port();
    let shutdown = service_plumbing::shutdown::Shutdown::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let compose = yaml(&deploy_dir().join("docker-compose.yml"));
    let test = compose["services"]["ingest-api"]["healthcheck"]["test"]
        .as_sequence()
        .unwrap();
    assert_eq!(str_of(&test[0]), "CMD");
    let run = |port: u16| {
        let args: Vec<String> = test[1..]
            .iter()
            .map(|arg| str_of(arg).replace("/8080 ", &format!("/{port} ")))
            .collect();
        async move {
            tokio::process::Command::new(&args[0])
                .args(&args[1..])
                .stderr(std::process::Stdio::null())
                .status()
                .await
                .unwrap()
                .success()
        }
    };
    let mut healthy = false;
    for _ in 0..100 {
        if run(port).await {
            healthy = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        healthy,
        "the healthcheck never passed on a ready ingest API"
    );
    let closed = devstack::process::free_loopback_port().unwrap();
    assert!(
        !run(closed).await,
        "the healthcheck passed on a closed port"
    );
    shutdown.trigger();
}
