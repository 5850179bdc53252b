//! What can be checked of `deploy/` without a Docker engine or a Kubernetes cluster: the files
//! parse; every alert has a unit test that fires it and one that does not; every `MYHEALTH_`
//! variable given to a service is one its `Config` reads, and the whole environment loads; the
//! image is built with `make release`'s command; probes, resources, grace periods, replicas
//! and disruption budgets are as the operations guide says; the compose healthcheck works
//! against a real service. And the security rules: compose secrets have no defaults, each service
//! has its own least-privilege PostgreSQL login and MongoDB user, only the public APIs listen
//! beyond loopback, Grafana has no anonymous access; in Kubernetes each Deployment has a Secret
//! of its own that the kustomization never contains, and a NetworkPolicy.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

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

/// Compose's interpolation as `up` would do it with every variable set: `${NAME:?message}`
/// becomes a test value (long enough for the HS256 secret), `${NAME:-default}` its default.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let inner = &rest[start + 2..end];
        if let Some((name, _message)) = inner.split_once(":?") {
            out.push_str(&format!("test-{name}-0123456789abcdef0123456789"));
        } else {
            out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The `${…}` interpolations of a compose value, without the braces.
fn interpolations(value: &str) -> Vec<&str> {
    value
        .split("${")
        .skip(1)
        .map(|rest| &rest[..rest.find('}').unwrap()])
        .collect()
}

/// The environment of a compose service, as written (not interpolated).
fn compose_environment(compose: &Value, service: &str) -> HashMap<String, String> {
    compose["services"][service]["environment"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{service} has no environment"))
        .iter()
        .map(|(key, value)| (str_of(key), str_of(value)))
        .collect()
}

/// The user and the password of a `scheme://user:password@host/…` URL.
fn url_credentials(url: &str) -> (&str, &str) {
    let authority = url.split_once("://").unwrap().1;
    let userinfo = authority
        .split_once('@')
        .unwrap_or_else(|| panic!("{url} carries no credentials"))
        .0;
    userinfo
        .split_once(':')
        .unwrap_or_else(|| panic!("{url} carries no password"))
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
        "db-logins",
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
    assert!(str_of(&mongodb["healthcheck"]["test"][1]).contains("rs.initiate"));

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
fn compose_secrets_have_no_defaults_and_no_service_holds_a_literal_password() {
    let text = read(&deploy_dir().join("docker-compose.yml"));
    let compose = yaml(&deploy_dir().join("docker-compose.yml"));
    // Every interpolation is `${NAME:?message}`: compose refuses to start without the value.
    let all = interpolations(&text);
    assert!(all.len() >= 8, "{all:?}");
    for inner in &all {
        let (name, message) = inner
            .split_once(":?")
            .unwrap_or_else(|| panic!("${{{inner}}} has a default or may be empty"));
        assert!(
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && !message.trim().is_empty(),
            "${{{inner}}}"
        );
    }
    // Every password, secret and URL credential is one of those interpolations.
    for (service, spec) in compose["services"].as_mapping().unwrap() {
        let service = str_of(service);
        let Some(environment) = spec["environment"].as_mapping() else {
            continue;
        };
        for (key, value) in environment {
            let (key, value) = (str_of(key), str_of(value));
            let secret_name = ["PASSWORD", "SECRET"].iter().any(|word| key.contains(word));
            if secret_name {
                assert!(
                    value.starts_with("${") && value.ends_with('}') && value.contains(":?"),
                    "{service}: {key} is not a required variable: {value}"
                );
            }
            if value.contains("://") && value.contains('@') {
                let (_, password) = url_credentials(&value);
                assert!(
                    password.starts_with("${") && password.contains(":?"),
                    "{service}: {key} carries a literal password"
                );
            }
        }
    }
}

#[test]
fn compose_services_log_in_to_postgresql_with_their_own_least_privilege_login() {
    let compose = yaml(&deploy_dir().join("docker-compose.yml"));
    let owner = compose_environment(&compose, "postgres")["POSTGRES_USER"].clone();
    let user_of = |service: &str| -> String {
        let env = compose_environment(&compose, service);
        url_credentials(&env["MYHEALTH_DATABASE_URL"]).0.to_string()
    };
    assert_eq!(user_of("migrate"), owner, "migrations run as the owner");
    let ingest = user_of("ingest-api");
    let daemon = user_of("cdc-daemon");
    assert_eq!(ingest, "myhealth_ingest_api");
    assert_eq!(daemon, "myhealth_cdc_daemon");
    assert!(
        !compose_environment(&compose, "reports-api").contains_key("MYHEALTH_DATABASE_URL"),
        "the reports API reads MongoDB only"
    );

    // The logins are made by the init step, after the migrations made the group roles, and each
    // service waits for it.
    let step = &compose["services"]["db-logins"];
    assert_eq!(str_of(&step["command"][0]), "psql");
    assert_eq!(
        step["depends_on"]["migrate"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    for service in ["ingest-api", "cdc-daemon"] {
        assert_eq!(
            compose["services"][service]["depends_on"]["db-logins"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{service} starts before its login exists"
        );
    }
    let step_env = compose_environment(&compose, "db-logins");
    assert_eq!(step_env["PGUSER"], owner);
    let mounted: Vec<String> = step["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    let script_path = mounted
        .iter()
        .find_map(|volume| volume.strip_suffix(":/create-logins.sql:ro"))
        .expect("the login script is not mounted");
    let script = read(&deploy_dir().join(script_path));
    let migrations = read(&deploy_dir().join("../sql/migrations/V3__roles.sql"));
    for (login, group, attributes, password_var) in [
        (&ingest, "myhealth_ingest", "LOGIN", "INGEST_DB_PASSWORD"),
        (
            &daemon,
            "myhealth_replication",
            "LOGIN REPLICATION",
            "CDC_DB_PASSWORD",
        ),
    ] {
        assert!(
            migrations.contains(&format!("'{group}'")),
            "{group} is not a role of sql/"
        );
        assert!(
            script.contains(&format!(
                "CREATE ROLE {login} {attributes} IN ROLE {group}'"
            )),
            "the script does not make {login} a {attributes} member of {group}"
        );
        let alter = script
            .lines()
            .find(|line| line.starts_with(&format!("ALTER ROLE {login} ")))
            .unwrap_or_else(|| panic!("the script never sets {login}'s password"));
        for denied in ["NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE"] {
            assert!(alter.contains(denied), "{alter}");
        }
        assert_eq!(
            alter.contains("NOREPLICATION"),
            login == &ingest,
            "only the daemon's login replicates: {alter}"
        );
        let variable = alter
            .split_once("PASSWORD :'")
            .and_then(|(_, rest)| rest.strip_suffix("';"))
            .unwrap_or_else(|| panic!("{login}'s password is not a psql variable: {alter}"));
        assert!(
            script.contains(&format!("\\getenv {variable} {password_var}\n"))
                && step_env[password_var].contains(":?"),
            "{login}'s password does not come from the required {password_var}"
        );
    }
    // Every connection needs a password; no `trust` line.
    let hba = read(&deploy_dir().join("postgres/pg_hba.conf"));
    let rules: Vec<Vec<&str>> = hba
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert!(!rules.is_empty());
    for rule in &rules {
        assert_eq!(rule.last(), Some(&"scram-sha-256"), "{rule:?}");
    }
    let command: Vec<String> = compose["services"]["postgres"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert!(command.contains(&"hba_file=/etc/postgresql/pg_hba.conf".to_string()));
}

#[test]
fn compose_mongodb_requires_authentication_with_a_writer_and_a_read_only_user() {
    let compose = yaml(&deploy_dir().join("docker-compose.yml"));
    let mongodb = &compose["services"]["mongodb"];
    let env = compose_environment(&compose, "mongodb");
    // The image turns authentication on when a root user is configured; a replica set with
    // authentication also needs a key file.
    assert!(env.contains_key("MONGO_INITDB_ROOT_USERNAME"));
    assert!(env["MONGO_INITDB_ROOT_PASSWORD"].contains(":?"));
    let entrypoint: String = mongodb["entrypoint"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(entrypoint.contains("--keyFile"), "{entrypoint}");
    assert!(entrypoint.contains("--replSet rs0"), "{entrypoint}");
    assert!(!entrypoint.contains("--noauth"), "{entrypoint}");
    // The healthcheck logs in as root with the password from its environment, read inside
    // mongosh: a command line is visible to every process of the host (`ps`).
    let check = str_of(&mongodb["healthcheck"]["test"][1]);
    assert!(
        check.contains("auth('root', process.env.MONGO_INITDB_ROOT_PASSWORD)"),
        "the healthcheck cannot log in: {check}"
    );
    assert!(
        !check.contains("--password") && !check.contains(" -p ") && !check.contains('$'),
        "the healthcheck puts a password on its command line: {check}"
    );

    let user_of = |service: &str| -> String {
        let env = compose_environment(&compose, service);
        let uri = &env["MYHEALTH_MONGODB_URI"];
        assert!(uri.contains("authSource=admin"), "{service}: {uri}");
        url_credentials(uri).0.to_string()
    };
    let writer = user_of("cdc-daemon");
    let reader = user_of("reports-api");
    assert_ne!(writer, reader);

    let volumes: Vec<String> = mongodb["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    let script_path = volumes
        .iter()
        .find_map(|volume| {
            volume
                .split_once(":/docker-entrypoint-initdb.d/")
                .map(|(host, _)| host.to_string())
        })
        .expect("no user script in /docker-entrypoint-initdb.d");
    let script = read(&deploy_dir().join(script_path));
    let users: Vec<&str> = script.split("createUser(").skip(1).collect();
    assert_eq!(users.len(), 2, "{script}");
    let roles_of = |user: &str| -> &str {
        users
            .iter()
            .find(|call| call.contains(&format!("user: \"{user}\"")))
            .unwrap_or_else(|| panic!("{user} is not created"))
            .split_once("roles:")
            .unwrap()
            .1
            .split_once(']')
            .unwrap()
            .0
    };
    let database = &compose_environment(&compose, "cdc-daemon")["MYHEALTH_MONGODB_DATABASE"];
    assert_eq!(
        roles_of(&writer).trim(),
        format!("[{{ role: \"readWrite\", db: \"{database}\" }}"),
        "the daemon's user"
    );
    assert_eq!(
        roles_of(&reader).trim(),
        format!("[{{ role: \"read\", db: \"{database}\" }}"),
        "the reports API's user may only read"
    );
    for call in &users {
        assert!(
            call.contains("pwd: process.env.MONGO_"),
            "a literal password in {call}"
        );
    }
}

#[test]
fn compose_publishes_only_the_two_public_apis_beyond_loopback() {
    let compose = yaml(&deploy_dir().join("docker-compose.yml"));
    let mut public = BTreeSet::new();
    for (service, spec) in compose["services"].as_mapping().unwrap() {
        let service = str_of(service);
        for port in spec["ports"].as_sequence().into_iter().flatten() {
            let port = str_of(port);
            if port.starts_with("127.0.0.1:") {
                continue;
            }
            public.insert(service.clone());
            assert!(
                ["ingest-api", "reports-api"].contains(&service.as_str()),
                "{service} publishes {port} on every interface"
            );
        }
    }
    assert_eq!(
        public,
        BTreeSet::from(["ingest-api".to_string(), "reports-api".to_string()])
    );
    for store in ["postgres", "mongodb"] {
        assert!(
            compose["services"][store]["ports"].is_null(),
            "{store} is published"
        );
    }
}

#[test]
fn compose_grafana_has_no_anonymous_access_and_a_required_admin_password() {
    let compose = yaml(&deploy_dir().join("docker-compose.yml"));
    let env = compose_environment(&compose, "grafana");
    assert_eq!(
        env.get("GF_AUTH_ANONYMOUS_ENABLED").map(String::as_str),
        Some("false")
    );
    assert!(!env.contains_key("GF_AUTH_ANONYMOUS_ORG_ROLE"));
    assert_eq!(
        env.get("GF_USERS_ALLOW_SIGN_UP").map(String::as_str),
        Some("false")
    );
    let password = &env["GF_SECURITY_ADMIN_PASSWORD"];
    assert!(
        password.starts_with("${") && password.contains(":?"),
        "{password}"
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
    let files: Vec<String> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    for file in &files {
        for object in yaml_documents(&dir.join(file)) {
            assert_ne!(
                object["kind"].as_str(),
                Some("Secret"),
                "{file}: `kubectl apply -k` would overwrite the operator's Secrets"
            );
            objects.push(object);
        }
    }
    for file in ["migrate-job.yaml", "secrets.example.yaml"] {
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
        // One Secret of its own, holding only what this service reads.
        let secret_refs: Vec<String> = container["envFrom"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|source| source.get("secretRef"))
            .map(|reference| str_of(&reference["name"]))
            .collect();
        assert_eq!(secret_refs, [format!("{name}-secrets")], "{name}'s Secrets");
        for (owner, key, _) in &secrets {
            if *owner == secret_refs[0] {
                assert!(
                    read.contains(key),
                    "{owner} holds {key}, which {name} does not read"
                );
            }
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
        // The migration Job's Secret is checked with the Job below, the CA's (a mounted file,
        // not environment) by the TLS test.
        assert!(
            owner == "myhealth-migrate-secrets"
                || owner == K8S_CA_SECRET
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

#[test]
fn kubernetes_secrets_are_created_by_the_operator_with_the_documented_commands() {
    let dir = deploy_dir().join("k8s");
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let listed: Vec<String> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert!(
        !listed.contains(&"secrets.example.yaml".to_string()),
        "`kubectl apply -k` would overwrite the Secrets"
    );
    // Each example Secret has a command in the runbook creating exactly its keys.
    let runbook = read(&deploy_dir().join("../docs/operations.md"));
    let section = runbook
        .split_once("\n## Secrets\n")
        .expect("docs/operations.md has no Secrets section")
        .1
        .split("\n## ")
        .next()
        .unwrap();
    let examples = yaml_documents(&dir.join("secrets.example.yaml"));
    assert_eq!(examples.len(), 5);
    for secret in &examples {
        assert_eq!(secret["kind"].as_str(), Some("Secret"));
        let name = str_of(&secret["metadata"]["name"]);
        let keys: BTreeSet<String> = secret["stringData"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(str_of)
            .collect();
        let command = section
            .split_once(&format!("create secret generic {name} "))
            .unwrap_or_else(|| panic!("no command creates {name}"))
            .1
            .split("| kubectl apply -f -")
            .next()
            .unwrap();
        assert!(command.contains("--dry-run=client -o yaml"), "{command}");
        let documented: BTreeSet<String> = command
            .split("--from-")
            .skip(1)
            .map(|option| {
                let (_, rest) = option.split_once('=').unwrap();
                rest.split_once('=').unwrap().0.to_string()
            })
            .collect();
        assert_eq!(documented, keys, "the command creating {name}");
    }
}

#[test]
fn kubernetes_denies_all_traffic_but_what_each_workload_needs() {
    let dir = deploy_dir().join("k8s");
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let objects: Vec<Value> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|file| yaml_documents(&dir.join(str_of(file))))
        .collect();
    let policies: Vec<&Value> = objects
        .iter()
        .filter(|object| object["kind"].as_str() == Some("NetworkPolicy"))
        .collect();
    let policy_types = |policy: &Value| -> Vec<String> {
        policy["spec"]["policyTypes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(str_of)
            .collect()
    };
    let deny_all = policies
        .iter()
        .find(|policy| {
            policy["spec"]["podSelector"]
                .as_mapping()
                .is_some_and(|selector| selector.is_empty())
        })
        .expect("no default-deny policy for the namespace");
    assert_eq!(policy_types(deny_all), ["Ingress", "Egress"]);
    assert!(deny_all["spec"]["ingress"].is_null() && deny_all["spec"]["egress"].is_null());

    // (protocol, port) pairs of a policy's ingress or egress rules.
    let ports = |policy: &Value, direction: &str| -> BTreeSet<(String, u64)> {
        policy["spec"][direction]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|rule| {
                rule["ports"]
                    .as_sequence()
                    .unwrap_or_else(|| panic!("a {direction} rule without ports"))
                    .iter()
                    .map(|port| (str_of(&port["protocol"]), port["port"].as_u64().unwrap()))
            })
            .collect()
    };
    let dns = [("UDP".to_string(), 53), ("TCP".to_string(), 53)];
    let postgres = ("TCP".to_string(), 5432);
    let mongodb = ("TCP".to_string(), 27017);
    let mut workloads: Vec<(Value, Vec<(String, u64)>)> = objects
        .iter()
        .filter(|object| object["kind"].as_str() == Some("Deployment"))
        .map(|deployment| {
            let needs = match deployment["metadata"]["name"].as_str().unwrap() {
                "ingest-api" => vec![postgres.clone()],
                "cdc-daemon" => vec![postgres.clone(), mongodb.clone()],
                "reports-api" => vec![mongodb.clone()],
                other => panic!("unknown Deployment {other}"),
            };
            (deployment.clone(), needs)
        })
        .collect();
    assert_eq!(workloads.len(), 3);
    let job = yaml_documents(&dir.join("migrate-job.yaml")).remove(0);
    workloads.push((job, vec![postgres.clone()]));
    for (workload, needs) in &workloads {
        let name = str_of(&workload["metadata"]["name"]);
        let labels = &workload["spec"]["template"]["metadata"]["labels"];
        let own: Vec<&&Value> = policies
            .iter()
            .filter(|policy| {
                let selector = policy["spec"]["podSelector"]["matchLabels"].as_mapping();
                selector.is_some_and(|selector| {
                    !selector.is_empty()
                        && selector
                            .iter()
                            .all(|(key, value)| labels.get(key) == Some(value))
                })
            })
            .collect();
        assert_eq!(own.len(), 1, "{name} has {} NetworkPolicies", own.len());
        let policy = own[0];
        assert_eq!(policy_types(policy), ["Ingress", "Egress"], "{name}");
        let served: BTreeSet<(String, u64)> = workload["spec"]["template"]["spec"]["containers"][0]
            ["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|port| ("TCP".to_string(), port["containerPort"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            ports(policy, "ingress"),
            served,
            "{name} accepts other ports"
        );
        let mut expected: BTreeSet<(String, u64)> = needs.iter().cloned().collect();
        expected.extend(dns.iter().cloned());
        assert_eq!(ports(policy, "egress"), expected, "{name}'s egress");
        // DNS only to the cluster's resolver.
        for rule in policy["spec"]["egress"].as_sequence().unwrap() {
            let is_dns = rule["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|port| port["port"].as_u64() == Some(53));
            if is_dns {
                assert!(!rule["to"].is_null(), "{name} may send DNS anywhere");
            }
        }
    }
    // The daemon serves nothing public: only the monitoring namespace may scrape it.
    let daemon = policies
        .iter()
        .find(|policy| policy["metadata"]["name"].as_str() == Some("cdc-daemon"))
        .unwrap();
    for rule in daemon["spec"]["ingress"].as_sequence().unwrap() {
        assert!(!rule["from"].is_null(), "anyone may reach the daemon");
    }
}

/// A usable value for a Secret placeholder: the reports API parses its public key at start.
fn k8s_placeholder(key: &str, value: &str) -> String {
    if key == "MYHEALTH_AUTH__PUBLIC_KEY_PEM" {
        read(&deploy_dir().join("../reports-api/tests/keys/ed25519-public.pem"))
    } else {
        value.to_string()
    }
}

// --- TLS to the databases -------------------------------------------------------------------------

/// The operator-created Secret holding the CA certificates the Kubernetes workloads mount.
const K8S_CA_SECRET: &str = "myhealth-database-ca";

/// The files a compose service mounts from the file's top-level `secrets` (short syntax, at
/// `/run/secrets/<name>`): path in the container → file under `deploy/`.
fn compose_secret_files(compose: &Value, service: &str) -> HashMap<String, PathBuf> {
    compose["services"][service]["secrets"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|entry| {
            let name = str_of(entry);
            let file = compose["secrets"][name.as_str()]["file"]
                .as_str()
                .unwrap_or_else(|| panic!("{service} mounts {name}, which names no file"));
            (format!("/run/secrets/{name}"), deploy_dir().join(file))
        })
        .collect()
}

/// The host of a `scheme://user:password@host:port/…` URL (its first host).
fn url_host(url: &str) -> &str {
    let authority = url.split_once('@').unwrap().1;
    authority
        .split(['/', ':', ',', '?'])
        .next()
        .unwrap_or_default()
}

/// Panics unless `url` — a PostgreSQL URL or a MongoDB URI, read as the binaries read it —
/// encrypts, checks the server's certificate against a CA file and its host name, and that CA
/// file is one of `mounted` (paths inside the workload's container).
async fn assert_verifies_the_server(workload: &str, url: &str, mounted: &BTreeSet<String>) {
    use service_plumbing::postgres::tls::{RootCert, SslMode, Tls};
    let ca = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let target = service_plumbing::postgres::tls::parse(url)
            .unwrap_or_else(|error| panic!("{workload}: {error}"));
        match target.tls {
            Tls {
                mode: SslMode::VerifyFull,
                root: Some(RootCert::File(path)),
            } => path,
            other => panic!("{workload}: a PostgreSQL URL without verify-full and a CA: {other:?}"),
        }
    } else {
        assert!(url.starts_with("mongodb://"), "{workload}: {url}");
        assert!(
            !url.contains("tlsInsecure") && !url.contains("tlsAllowInvalid"),
            "{workload}: a MongoDB URI that skips a check"
        );
        let options = mongodb::options::ClientOptions::parse(url)
            .await
            .unwrap_or_else(|error| panic!("{workload}: the driver refuses its URI: {error}"));
        match options.tls {
            Some(mongodb::options::Tls::Enabled(tls)) => {
                assert_ne!(tls.allow_invalid_certificates, Some(true), "{workload}");
                tls.ca_file_path
                    .unwrap_or_else(|| panic!("{workload}: a MongoDB URI without tlsCAFile"))
            }
            other => panic!("{workload}: a MongoDB URI without tls=true: {other:?}"),
        }
    };
    let ca = ca.to_str().unwrap();
    assert!(
        mounted.contains(ca),
        "{workload}: the CA {ca} is not mounted (mounted: {mounted:?})"
    );
}

#[tokio::test]
async fn every_compose_database_url_verifies_the_server_with_a_ca_the_service_mounts() {
    let compose = yaml(&deploy_dir().join("docker-compose.yml"));
    let mut checked = BTreeSet::new();
    for (service, spec) in compose["services"].as_mapping().unwrap() {
        let service = str_of(service);
        let Some(environment) = spec["environment"].as_mapping() else {
            continue;
        };
        let mounted: BTreeSet<String> = compose_secret_files(&compose, &service)
            .into_keys()
            .collect();
        for (key, value) in environment {
            let value = interpolate(&str_of(value));
            for (scheme, server) in [("postgres://", "postgres"), ("mongodb://", "mongodb")] {
                if value.starts_with(scheme) {
                    assert_verifies_the_server(&service, &value, &mounted).await;
                    // The certificate names the server's compose host name (the script's test).
                    assert_eq!(url_host(&value), server, "{service}: {key:?}");
                    checked.insert((service.clone(), str_of(key)));
                }
            }
        }
    }
    assert_eq!(checked.len(), 5, "{checked:?}");

    // psql (the login step) with libpq's own variables, to the same rules.
    let logins = compose_environment(&compose, "db-logins");
    assert_eq!(logins["PGSSLMODE"], "verify-full");
    assert!(
        compose_secret_files(&compose, "db-logins").contains_key(&logins["PGSSLROOTCERT"]),
        "db-logins: PGSSLROOTCERT is not mounted"
    );
    assert_eq!(logins["PGHOST"], "postgres");
}

/// The `install … SOURCE DESTINATION` steps of a compose entrypoint (`bash -c SCRIPT`):
/// destination → source.
fn installed_files(spec: &Value) -> HashMap<String, String> {
    assert_eq!(str_of(&spec["entrypoint"][1]), "-c");
    str_of(&spec["entrypoint"][2])
        .split("&&")
        .filter_map(|step| {
            let words: Vec<&str> = step.split_whitespace().collect();
            (words.first() == Some(&"install")).then(|| {
                let [.., source, destination] = words.as_slice() else {
                    panic!("{step}");
                };
                (destination.to_string(), source.to_string())
            })
        })
        .collect()
}

#[test]
fn compose_postgresql_serves_tls_and_accepts_tcp_connections_only_over_it() {
    let compose = yaml(&deploy_dir().join("docker-compose.yml"));
    let postgres = &compose["services"]["postgres"];
    let command: Vec<String> = postgres["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert!(command.contains(&"ssl=on".to_string()), "{command:?}");
    // The certificate and key come from the operator's secrets, copied for the server's user.
    let mounted = compose_secret_files(&compose, "postgres");
    let installed = installed_files(postgres);
    for (setting, secret) in [
        ("ssl_cert_file", "postgres_tls_cert"),
        ("ssl_key_file", "postgres_tls_key"),
    ] {
        let path = command
            .iter()
            .find_map(|arg| arg.strip_prefix(&format!("{setting}=")))
            .unwrap_or_else(|| panic!("no {setting} in {command:?}"));
        let source = installed
            .get(path)
            .unwrap_or_else(|| panic!("{setting} {path} is not installed by the entrypoint"));
        assert_eq!(source, &format!("/run/secrets/{secret}"));
        assert!(mounted.contains_key(source), "{secret} is not mounted");
    }
    let entrypoint = str_of(&postgres["entrypoint"][2]);
    assert!(
        entrypoint.contains("-m 0600 -o postgres -g postgres /run/secrets/postgres_tls_key"),
        "PostgreSQL refuses a key others may read: {entrypoint}"
    );
    // (`$$` is compose's escape for `$`.)
    assert!(
        entrypoint.ends_with("exec docker-entrypoint.sh \"$$@\""),
        "{entrypoint}"
    );

    // TCP only with TLS: `hostssl` lines, no `host` or `hostnossl` (Unix socket: `local`).
    let hba = read(&deploy_dir().join("postgres/pg_hba.conf"));
    let types: Vec<&str> = hba
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split_whitespace().next().unwrap())
        .collect();
    assert!(types.contains(&"hostssl"), "{types:?}");
    for kind in types {
        assert!(
            ["local", "hostssl"].contains(&kind),
            "pg_hba.conf accepts TCP without TLS: a {kind} line"
        );
    }
}

#[test]
fn compose_mongodb_requires_tls_with_the_operator_certificate() {
    let compose = yaml(&deploy_dir().join("docker-compose.yml"));
    let mongodb = &compose["services"]["mongodb"];
    let entrypoint = str_of(&mongodb["entrypoint"][2]);
    let mongod = entrypoint
        .split_once("exec docker-entrypoint.sh mongod ")
        .unwrap_or_else(|| panic!("{entrypoint}"))
        .1;
    let words: Vec<&str> = mongod.split_whitespace().collect();
    let option = |name: &str| -> &str {
        words
            .iter()
            .position(|word| *word == name)
            .map(|index| words[index + 1])
            .unwrap_or_else(|| panic!("mongod without {name}: {mongod}"))
    };
    assert_eq!(option("--tlsMode"), "requireTLS");
    let mounted = compose_secret_files(&compose, "mongodb");
    let key_file = option("--tlsCertificateKeyFile");
    let source = &installed_files(mongodb)[key_file];
    assert_eq!(source, "/run/secrets/mongodb_tls_pem");
    assert!(mounted.contains_key(source));
    assert!(mounted.contains_key(option("--tlsCAFile")));
    // The healthcheck speaks TLS too, to the name the certificate carries.
    let check = str_of(&mongodb["healthcheck"]["test"][1]);
    let ca = check
        .split_once("--tls --tlsCAFile ")
        .unwrap_or_else(|| panic!("the healthcheck does not use TLS: {check}"))
        .1
        .split_whitespace()
        .next()
        .unwrap();
    assert!(mounted.contains_key(ca), "{ca}");
    assert!(check.contains("--host mongodb "), "{check}");
}

#[test]
fn compose_tls_files_are_made_by_the_script_for_the_compose_host_names_and_never_committed() {
    let compose = yaml(&deploy_dir().join("docker-compose.yml"));
    let files: BTreeSet<String> = compose["secrets"]
        .as_mapping()
        .unwrap()
        .values()
        .map(|secret| str_of(&secret["file"]))
        .collect();
    let ignored = read(&deploy_dir().join("tls/.gitignore"));
    for file in &files {
        let name = file
            .strip_prefix("./tls/")
            .unwrap_or_else(|| panic!("{file} is not made in deploy/tls"));
        let extension = name.rsplit_once('.').unwrap().1;
        assert!(
            ignored.lines().any(|line| line == format!("*.{extension}")),
            "deploy/tls/.gitignore does not keep {name} out of version control"
        );
    }

    let out = tempfile::tempdir().unwrap();
    let made = std::process::Command::new(deploy_dir().join("tls/make-certs.sh"))
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let produced: BTreeSet<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|entry| format!("./tls/{}", entry.unwrap().file_name().to_string_lossy()))
        .collect();
    assert_eq!(
        produced, files,
        "the script makes other files than compose reads"
    );

    // Each server's certificate is issued by the CA for its compose host name, and for no other.
    let file_of = |secret: &str| {
        out.path()
            .join(str_of(&compose["secrets"][secret]["file"]).trim_start_matches("./tls/"))
    };
    let verifies = |certificate: &Path, host: &str| {
        std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(file_of("myhealth_ca"))
            .args(["-verify_hostname", host])
            .arg(certificate)
            .output()
            .unwrap()
            .status
            .success()
    };
    for (secret, host, other) in [
        ("postgres_tls_cert", "postgres", "mongodb"),
        ("mongodb_tls_pem", "mongodb", "postgres"),
    ] {
        assert!(verifies(&file_of(secret), host), "{secret} for {host}");
        assert!(!verifies(&file_of(secret), other), "{secret} for {other}");
    }
    // The CA's key is gone; the servers' keys are private to whoever made them.
    let pems: Vec<String> = produced
        .iter()
        .map(|file| read(&out.path().join(file.trim_start_matches("./tls/"))))
        .collect();
    assert_eq!(
        pems.iter()
            .filter(|pem| pem.contains("PRIVATE KEY"))
            .count(),
        2,
        "only the two servers' keys"
    );
    for secret in ["postgres_tls_key", "mongodb_tls_pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file_of(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{secret} is readable by others");
    }
}

#[tokio::test]
async fn every_kubernetes_database_url_verifies_the_server_with_the_mounted_ca() {
    let dir = deploy_dir().join("k8s");
    let secrets = yaml_documents(&dir.join("secrets.example.yaml"));
    let secret = |name: &str| -> &Value {
        secrets
            .iter()
            .find(|secret| secret["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no example Secret {name}"))
    };
    let ca_keys: BTreeSet<String> = secret(K8S_CA_SECRET)["stringData"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(str_of)
        .collect();
    let mut workloads: Vec<Value> = ["ingest-api", "cdc-daemon", "reports-api"]
        .iter()
        .map(|file| yaml_documents(&dir.join(format!("{file}.yaml"))).remove(0))
        .collect();
    workloads.push(yaml_documents(&dir.join("migrate-job.yaml")).remove(0));
    let mut all_mounted = BTreeSet::new();
    let mut urls = 0;
    for workload in &workloads {
        let name = str_of(&workload["metadata"]["name"]);
        let pod = &workload["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        // The CA files the container sees: each item of the CA Secret's volume at its mount.
        let mut mounted = BTreeSet::new();
        for mount in container["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            let volume = pod["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|volume| volume["name"] == mount["name"])
                .unwrap();
            assert_eq!(
                volume["secret"]["secretName"].as_str(),
                Some(K8S_CA_SECRET),
                "{name}"
            );
            assert_eq!(mount["readOnly"].as_bool(), Some(true), "{name}");
            for item in volume["secret"]["items"].as_sequence().unwrap() {
                let key = str_of(&item["key"]);
                assert!(
                    ca_keys.contains(&key),
                    "{name} mounts {key}, no key of {K8S_CA_SECRET}"
                );
                mounted.insert(format!(
                    "{}/{}",
                    str_of(&mount["mountPath"]),
                    str_of(&item["path"])
                ));
            }
        }
        let own = str_of(
            &container["envFrom"]
                .as_sequence()
                .unwrap()
                .iter()
                .find_map(|source| source.get("secretRef"))
                .unwrap()["name"],
        );
        for (key, value) in secret(&own)["stringData"].as_mapping().unwrap() {
            let value = str_of(value);
            if value.contains("://") {
                assert_verifies_the_server(&format!("{own} {}", str_of(key)), &value, &mounted)
                    .await;
                urls += 1;
            }
        }
        all_mounted.extend(mounted);
    }
    assert_eq!(urls, 5);

    // The runbook's commands build the same URLs.
    let runbook = read(&deploy_dir().join("../docs/operations.md"));
    let commands = runbook
        .split_once("\n## Secrets\n")
        .unwrap()
        .1
        .split_once("```sh\n")
        .unwrap()
        .1
        .split_once("```")
        .unwrap()
        .0;
    let mut defined: Vec<(String, String)> = Vec::new();
    for line in commands.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        let mut value = value.trim_matches(['\'', '"']).to_string();
        for (earlier, expansion) in &defined {
            value = value.replace(&format!("${earlier}"), expansion);
        }
        defined.push((name.to_string(), value));
    }
    let mut used = 0;
    for (_, variable) in commands
        .split("--from-literal=")
        .skip(1)
        .map(|option| option.split_once('=').unwrap())
    {
        let variable = variable
            .split_whitespace()
            .next()
            .unwrap()
            .trim_matches('"');
        let Some(name) = variable.strip_prefix('$') else {
            continue;
        };
        let (_, url) = defined
            .iter()
            .find(|(defined, _)| defined == name)
            .unwrap_or_else(|| panic!("the runbook never sets {name}"));
        if url.contains("://") {
            assert_verifies_the_server(&format!("docs/operations.md {name}"), url, &all_mounted)
                .await;
            used += 1;
        }
    }
    assert_eq!(used, 5, "the runbook's URLs");
}

// --- the compose healthcheck against a real service ---------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn compose_healthcheck_command_passes_on_a_ready_service_and_fails_on_a_closed_port() {
    let ctx = devstack::TestContext::new().await.unwrap();
    let ingest = devstack::in_process::ingest(&[("MYHEALTH_DATABASE_URL", &ctx.database_url)])
        .await
        .unwrap();
    let port: u16 = ingest.url.rsplit_once(':').unwrap().1.parse().unwrap();

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
    ingest.stop().await.unwrap();
}
