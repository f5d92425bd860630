//! The deployment files checked by their ecosystems' own validators — hadolint for the
//! Dockerfile, docker-compose for every Compose profile, kubernetes-validate for every
//! manifest, systemd-analyze for the unit — and checked against the binary: every `vitalwatch`
//! command line in them uses subcommands, flags and variables `--help` lists, and their ports
//! are the binary's defaults. The Debian package is built, installed with dpkg and started
//! for real (package.rs). No container engine runs here, so no image is built or started.

mod lines;
mod package;

use crate::support::{Server, ServerOptions, bin, poll_until};
use lines::CommandLine;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// Runs `command`; panics with its output unless it succeeds; returns stdout + stderr.
fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err} (scripts/test installs it)"));
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

/// A YAML file's documents as JSON, read by PyYAML (installed with kubernetes-validate).
fn yaml_documents(path: &Path) -> Vec<serde_json::Value> {
    let text = run_ok(
        Command::new("python3")
            .args([
                "-c",
                "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None], sys.stdout)",
            ])
            .arg(path),
    );
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}: {text}", path.display()))
}

/// docker-compose (PyPI): `$VITALWATCH_DOCKER_COMPOSE`, else the virtualenv scripts/test
/// installs it in, else the one on PATH.
fn docker_compose() -> String {
    if let Ok(path) = std::env::var("VITALWATCH_DOCKER_COMPOSE") {
        return path;
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|home| Path::new(&home).join(".cache")));
    match cache {
        Ok(cache) => {
            let venv = cache.join("vitalwatch/compose-venv/bin/docker-compose");
            if venv.exists() {
                return venv.display().to_string();
            }
            "docker-compose".to_owned()
        }
        Err(_) => "docker-compose".to_owned(),
    }
}

const COMPOSE: &str = "deploy/compose/compose.yaml";
const COMPOSE_PROFILES: [&str; 3] = ["", "broker", "cluster"];

fn kubernetes_manifests() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let root = repo().join("deploy/kubernetes");
    for overlay in std::fs::read_dir(&root).expect("deploy/kubernetes") {
        let overlay = overlay.unwrap().path();
        for file in std::fs::read_dir(&overlay).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".yaml") && name != "kustomization.yaml" {
                files.push(file);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no manifests under {}", root.display());
    files
}

#[test]
fn dockerfile_passes_hadolint_without_warnings() {
    let out = run_ok(Command::new("hadolint").arg(repo().join("Dockerfile")));
    assert!(out.trim().is_empty(), "hadolint: {out}");
}

#[test]
fn compose_file_is_valid_in_every_profile() {
    for profile in COMPOSE_PROFILES {
        let mut command = Command::new(docker_compose());
        command.current_dir(repo()).args(["-f", COMPOSE]);
        if !profile.is_empty() {
            command.args(["--profile", profile]);
        }
        command.args(["config", "-q"]);
        run_ok(&mut command);
    }
}

#[test]
fn kubernetes_manifests_validate_against_the_current_schema() {
    for file in kubernetes_manifests() {
        let out = run_ok(
            Command::new("kubernetes-validate")
                .arg("--strict")
                .arg(&file),
        );
        assert!(out.contains("passed"), "{}: {out}", file.display());
        // Every resource a kustomization lists exists, and every manifest is listed.
        let kustomization = yaml_documents(&file.with_file_name("kustomization.yaml"));
        let listed = kustomization[0]["resources"].as_array().unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            listed.iter().any(|r| r == name.as_str()),
            "{} is not in its kustomization.yaml",
            file.display()
        );
    }
}

/// The cluster files describe the topology the cluster tests run as processes: HAProxy in TCP
/// mode sending work only to nodes whose `/ready` answers 200, every node on the same
/// multi-host PostgreSQL URL that finds the writable server, a synchronous standby.
#[test]
fn cluster_files_describe_the_tested_topology() {
    let haproxy = repo().join("deploy/compose/haproxy/haproxy.cfg");
    run_ok(Command::new("haproxy").arg("-c").arg("-f").arg(&haproxy));
    let config = std::fs::read_to_string(&haproxy).unwrap();
    for needle in ["mode tcp", "uri /ready", "expect status 200", "check-ssl"] {
        assert!(config.contains(needle), "haproxy.cfg lacks {needle:?}");
    }
    for port in [8883, 5000, 8501] {
        assert!(
            config.contains(&format!("bind :{port}")),
            "haproxy.cfg: port {port}"
        );
    }
    let compose = &yaml_documents(&repo().join(COMPOSE))[0]["services"];
    let nodes: Vec<&serde_json::Value> = compose
        .as_object()
        .unwrap()
        .values()
        .filter(|s| s["profiles"][0] == "cluster" && s["hostname"].is_string())
        .collect();
    assert!(
        nodes.len() >= 2,
        "the cluster profile has {} nodes",
        nodes.len()
    );
    for backend in ["mqtts", "api", "dashboard"] {
        let section = config
            .split(&format!("\nbackend {backend}\n"))
            .nth(1)
            .expect("a backend per port");
        let servers = section
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| l.trim_start().starts_with("server "))
            .count();
        assert_eq!(servers, nodes.len(), "backend {backend} lists every node");
    }
    let primary = compose["pg-primary"]["command"].to_string();
    assert!(
        primary.contains("synchronous_standby_names=FIRST 1 (pg_standby)"),
        "{primary}"
    );
    let standby = std::fs::read_to_string(repo().join("deploy/compose/postgres/standby.sh"));
    assert!(standby.unwrap().contains("cluster_name=pg_standby"));
    for node in &nodes {
        let url = node["environment"]["VITALWATCH_DATABASE_URL"]
            .as_str()
            .unwrap();
        assert!(
            url.contains("@pg-primary:5432,pg-standby:5432/")
                && url.ends_with("?target_session_attrs=read-write"),
            "{url}"
        );
        let check = node["healthcheck"]["test"].to_string();
        assert!(
            check.contains("/ready"),
            "a node is healthy when ready: {check}"
        );
    }
    let deployment = &yaml_documents(&repo().join("deploy/kubernetes/cluster/deployment.yaml"))[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    let env = container["env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e["name"] == "VITALWATCH_DATABASE_URL"
            && e["valueFrom"]["secretKeyRef"].is_object()),
        "the database URL comes from a Secret"
    );
}

/// Every `vitalwatch` command line in the deployment files.
fn deploy_command_lines() -> Vec<CommandLine> {
    let root = repo();
    let mut found = Vec::new();
    for doc in yaml_documents(&root.join(COMPOSE)) {
        found.extend(lines::from_compose(&doc));
    }
    for file in kubernetes_manifests() {
        for doc in yaml_documents(&file) {
            found.extend(lines::from_kubernetes(&file.display().to_string(), &doc));
        }
    }
    let unit = std::fs::read_to_string(root.join("deploy/systemd/vitalwatch.service")).unwrap();
    found.extend(lines::from_systemd_unit(&unit));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    found.extend(lines::from_dockerfile(&dockerfile));
    found
}

#[test]
fn deployment_command_lines_use_what_the_binary_offers() {
    let found = deploy_command_lines();
    // Compose's two VitalWatch services and their health checks, the StatefulSet, the unit,
    // the Dockerfile's CMD and HEALTHCHECK at least.
    assert!(found.len() >= 7, "too few command lines found: {found:#?}");
    let mut problems = Vec::new();
    for line in &found {
        let subcommand = line.subcommand();
        let output = Command::new(bin())
            .args([subcommand, "--help"])
            .output()
            .expect("running vitalwatch --help");
        if !output.status.success() {
            problems.push(format!("{}: no subcommand {subcommand:?}", line.origin));
            continue;
        }
        let help = String::from_utf8_lossy(&output.stdout);
        problems.extend(lines::check(&help, line));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn deployment_ports_are_the_binarys_defaults() {
    let defaults = run_ok(Command::new(bin()).args(["config", "default"]));
    for (key, port) in [
        ("mqtts_addr", 8883),
        ("http_addr", 5000),
        ("dashboard_addr", 8501),
    ] {
        assert!(
            defaults.contains(&format!("{key} = \"0.0.0.0:{port}\"")),
            "{key} is no longer port {port}: update the deployment files"
        );
    }
    let mut ports = Vec::new();
    for doc in yaml_documents(&repo().join(COMPOSE)) {
        ports.extend(lines::compose_container_ports(&doc));
    }
    for file in kubernetes_manifests() {
        for doc in yaml_documents(&file) {
            ports.extend(lines::kubernetes_container_ports(&doc));
        }
    }
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    ports.extend(lines::dockerfile_exposed_ports(&dockerfile));
    assert!(ports.len() >= 8, "too few ports found: {ports:?}");
    for (origin, port) in &ports {
        assert!(
            [8883, 5000, 8501].contains(port),
            "{origin} uses port {port}, which VitalWatch does not listen on by default"
        );
    }
}

/// The Kubernetes layout: the PKI mounted read-only from a Secret without the CA's key.
/// `serve` must run from it, accept a device issued off-cluster, and write nothing there.
#[test]
fn serve_runs_from_a_read_only_pki_without_the_ca_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::support::mosquitto::Pki::init(&dir.path().join("pki"));
    let (cert, key) = pki.client("bed-ro");
    let secret = dir.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    for name in ["ca.crt", "ca.crl", "server.crt", "server.key", "audit.key"] {
        std::fs::copy(pki.dir.join(name), secret.join(name)).unwrap();
        set_mode(&secret.join(name), 0o400);
    }
    set_mode(&secret, 0o500);
    let before = listing(&secret);

    let server = Server::start_secure(ServerOptions::with_args(
        dir.path(),
        &["--certs-dir", secret.to_str().unwrap()],
    ));
    let mqtts = server.mqtts.expect("the embedded broker listens");
    let payload = crate::support::reading("bed-ro", 1, 72.0);
    let out = run_ok(
        Command::new("mosquitto_pub")
            .args([
                "-h",
                "localhost",
                "-p",
                &mqtts.port().to_string(),
                "-q",
                "1",
            ])
            .args(["-t", "/iot/health", "-m", &payload, "--cafile"])
            .arg(pki.ca())
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key),
    );
    let stored = poll_until(Duration::from_secs(30), || {
        crate::support::counts(&server.data_dir).readings >= 1
    });
    assert!(
        stored.is_some(),
        "the reading was not stored: {out}\n{}",
        server.log()
    );
    assert_eq!(
        listing(&secret),
        before,
        "serve wrote into the read-only PKI"
    );
    set_mode(&secret, 0o700);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    names.sort();
    names
}
