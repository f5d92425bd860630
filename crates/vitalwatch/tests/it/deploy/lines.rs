//! Pure extraction of the `vitalwatch` command lines, variables and ports from each kind of
//! deployment file, and the check of a command line against the binary's `--help`.

use serde_json::Value;

/// One way a deployment file runs the binary.
#[derive(Debug, Default)]
pub struct CommandLine {
    /// Which file and service, for the failure message.
    pub origin: String,
    /// The arguments after the binary (the subcommand first).
    pub args: Vec<String>,
    /// The environment variables it is given (names only).
    pub env: Vec<String>,
}

impl CommandLine {
    pub fn subcommand(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or("serve")
    }
}

/// Variables the binary reads without clap (so `--help` does not list them).
const OUTSIDE_CLAP: [&str; 1] = ["RUST_LOG"];

/// What is wrong with `line` given its subcommand's `--help` text.
pub fn check(help: &str, line: &CommandLine) -> Vec<String> {
    let mut problems = Vec::new();
    for arg in &line.args {
        let Some(flag) = arg.strip_prefix("--") else {
            continue;
        };
        let name = flag.split('=').next().unwrap_or(flag);
        // Only a flag's own entry counts, not a mention in another flag's prose.
        let listed = help
            .lines()
            .filter(|l| l.trim_start().starts_with('-'))
            .any(|l| {
                l.split(|c: char| c.is_whitespace() || c == ',')
                    .any(|word| word == format!("--{name}"))
            });
        if !listed {
            problems.push(format!(
                "{}: `vitalwatch {}` has no flag --{name}",
                line.origin,
                line.subcommand()
            ));
        }
    }
    for name in &line.env {
        let ours = name.starts_with("VITALWATCH_") || name.starts_with("MQTT_");
        if ours
            && !OUTSIDE_CLAP.contains(&name.as_str())
            && !help.contains(&format!("[env: {name}="))
            // A secret's variable is listed without its value (`hide_env_values`).
            && !help.contains(&format!("[env: {name}]"))
        {
            problems.push(format!(
                "{}: `vitalwatch {}` reads no variable {name}",
                line.origin,
                line.subcommand()
            ));
        }
    }
    problems
}

fn is_vitalwatch_image(image: &Value) -> bool {
    image.as_str().is_some_and(|i| i.starts_with("vitalwatch"))
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The names of a Compose `environment` (a map, or a list of `NAME=value`).
fn compose_env(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map.keys().cloned().collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str())
            .map(|s| s.split('=').next().unwrap_or(s).to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// A health check's command when it runs the binary: its arguments after the binary.
fn binary_args(command: &[String]) -> Option<Vec<String>> {
    let at = command
        .iter()
        .position(|a| a.ends_with("/vitalwatch") || a == "vitalwatch")?;
    Some(command[at + 1..].to_vec())
}

pub fn from_compose(doc: &Value) -> Vec<CommandLine> {
    let mut found = Vec::new();
    let Some(services) = doc["services"].as_object() else {
        return found;
    };
    for (name, service) in services {
        if !is_vitalwatch_image(&service["image"]) {
            continue;
        }
        let env = compose_env(&service["environment"]);
        found.push(CommandLine {
            origin: format!("compose service {name}"),
            args: strings(&service["command"]),
            env,
        });
        if let Some(args) = binary_args(&strings(&service["healthcheck"]["test"])) {
            found.push(CommandLine {
                origin: format!("compose service {name} healthcheck"),
                args,
                // The service's variables are for its command, not for the check.
                env: Vec::new(),
            });
        }
    }
    found
}

/// The pod template's containers of a workload (or a bare Pod's).
fn containers(doc: &Value) -> Vec<&Value> {
    let spec = if doc["kind"] == "Pod" {
        &doc["spec"]
    } else {
        &doc["spec"]["template"]["spec"]
    };
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec[*k].as_array())
        .flatten()
        .collect()
}

pub fn from_kubernetes(file: &str, doc: &Value) -> Vec<CommandLine> {
    let mut found = Vec::new();
    for container in containers(doc) {
        if !is_vitalwatch_image(&container["image"]) {
            continue;
        }
        let origin = format!(
            "{file}: {} {} container {}",
            doc["kind"].as_str().unwrap_or("?"),
            doc["metadata"]["name"].as_str().unwrap_or("?"),
            container["name"].as_str().unwrap_or("?")
        );
        let env: Vec<String> = container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str().map(str::to_owned))
            .collect();
        found.push(CommandLine {
            origin: origin.clone(),
            args: strings(&container["args"]),
            env: env.clone(),
        });
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if let Some(args) = binary_args(&strings(&container[probe]["exec"]["command"])) {
                found.push(CommandLine {
                    origin: format!("{origin} {probe}"),
                    args,
                    env: Vec::new(),
                });
            }
        }
    }
    found
}

pub fn from_systemd_unit(unit: &str) -> Vec<CommandLine> {
    let env: Vec<String> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .flat_map(|l| l.split_whitespace())
        .map(|kv| kv.split('=').next().unwrap_or(kv).to_owned())
        .collect();
    unit.lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .map(|l| CommandLine {
            origin: "deploy/systemd/vitalwatch.service ExecStart".to_owned(),
            args: l.split_whitespace().skip(1).map(str::to_owned).collect(),
            env: env.clone(),
        })
        .collect()
}

/// The JSON array after `keyword` on a Dockerfile line (exec form).
fn exec_form(line: &str, keyword: &str) -> Option<Vec<String>> {
    let at = line.find(keyword)?;
    let array: Vec<String> = serde_json::from_str(line[at + keyword.len()..].trim()).ok()?;
    Some(array)
}

/// Dockerfile lines with their `\` continuations joined.
fn logical_lines(dockerfile: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines
}

pub fn from_dockerfile(dockerfile: &str) -> Vec<CommandLine> {
    let lines = logical_lines(dockerfile);
    let env: Vec<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_owned()))
        .collect();
    let mut found = Vec::new();
    for line in &lines {
        let (args, origin) = if line.starts_with("CMD ") {
            (exec_form(line, "CMD"), "Dockerfile CMD")
        } else if line.starts_with("HEALTHCHECK ") {
            let command = exec_form(line, " CMD");
            (
                command.and_then(|c| binary_args(&c)),
                "Dockerfile HEALTHCHECK",
            )
        } else {
            continue;
        };
        if let Some(args) = args {
            let for_serve = origin == "Dockerfile CMD";
            found.push(CommandLine {
                origin: origin.to_owned(),
                args,
                env: if for_serve { env.clone() } else { Vec::new() },
            });
        }
    }
    found
}

/// The container-side ports a Compose file publishes for VitalWatch services.
pub fn compose_container_ports(doc: &Value) -> Vec<(String, u16)> {
    let mut ports = Vec::new();
    for (name, service) in doc["services"].as_object().into_iter().flatten() {
        if !is_vitalwatch_image(&service["image"]) {
            continue;
        }
        for port in service["ports"].as_array().into_iter().flatten() {
            let text = port.as_str().unwrap_or_default();
            let container = text.rsplit(':').next().unwrap_or(text);
            if let Ok(port) = container.parse() {
                ports.push((format!("compose service {name}"), port));
            }
        }
    }
    ports
}

pub fn kubernetes_container_ports(doc: &Value) -> Vec<(String, u16)> {
    let mut ports = Vec::new();
    for container in containers(doc) {
        if !is_vitalwatch_image(&container["image"]) {
            continue;
        }
        for port in container["ports"].as_array().into_iter().flatten() {
            if let Some(p) = port["containerPort"].as_u64() {
                let origin = format!("{} {}", doc["kind"], doc["metadata"]["name"]);
                ports.push((origin, u16::try_from(p).unwrap_or(0)));
            }
        }
    }
    if doc["kind"] == "Service" {
        for port in doc["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(p) = port["port"].as_u64() {
                let origin = format!("Service {}", doc["metadata"]["name"]);
                ports.push((origin, u16::try_from(p).unwrap_or(0)));
            }
        }
    }
    ports
}

pub fn dockerfile_exposed_ports(dockerfile: &str) -> Vec<(String, u16)> {
    logical_lines(dockerfile)
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|p| p.split('/').next()?.parse().ok())
        .map(|p| ("Dockerfile EXPOSE".to_owned(), p))
        .collect()
}

#[test]
fn the_check_catches_an_unknown_flag_and_an_unknown_variable() {
    let help = "Options:\n      --data-dir <DIR>\n          Directory [env: VITALWATCH_DATA_DIR=]\n  -h, --help\n";
    let good = CommandLine {
        origin: "test".to_owned(),
        args: vec!["serve".into(), "--data-dir=/x".into(), "--help".into()],
        env: vec![
            "VITALWATCH_DATA_DIR".into(),
            "RUST_LOG".into(),
            "HOME".into(),
        ],
    };
    assert!(check(help, &good).is_empty(), "{:?}", check(help, &good));
    let bad = CommandLine {
        origin: "test".to_owned(),
        // A prefix of a real flag is not that flag.
        args: vec!["serve".into(), "--data".into(), "--no-such-flag".into()],
        env: vec!["VITALWATCH_DATA".into(), "MQTT_HOST".into()],
    };
    assert_eq!(check(help, &bad).len(), 4, "{:?}", check(help, &bad));
}

#[test]
fn every_kind_of_file_yields_its_command_lines() {
    let compose: Value = serde_json::json!({"services": {
        "vw": {"image": "vitalwatch:1", "command": ["serve", "--no-mqtt"],
               "environment": {"MQTT_BROKER": "m"},
               "healthcheck": {"test": ["CMD", "/usr/local/bin/vitalwatch", "probe"]},
               "ports": ["5000:5000", "127.0.0.1:8501:8501"]},
        "other": {"image": "eclipse-mosquitto:2", "command": ["--nope"]}}});
    let found = from_compose(&compose);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].args, ["serve", "--no-mqtt"]);
    assert_eq!(found[0].env, ["MQTT_BROKER"]);
    assert_eq!(found[1].args, ["probe"]);
    assert_eq!(
        compose_container_ports(&compose)
            .iter()
            .map(|p| p.1)
            .collect::<Vec<_>>(),
        [5000, 8501]
    );

    let unit = "[Service]\nEnvironment=VITALWATCH_LOG_FORMAT=json\nExecStart=/usr/bin/vitalwatch serve --config /etc/v.toml\n";
    let found = from_systemd_unit(unit);
    assert_eq!(found[0].args, ["serve", "--config", "/etc/v.toml"]);
    assert_eq!(found[0].env, ["VITALWATCH_LOG_FORMAT"]);

    let dockerfile = "ENV A_B=1 \\\n    VITALWATCH_X=2\nEXPOSE 8883 5000/tcp\nHEALTHCHECK --interval=1s \\\n  CMD [\"/usr/local/bin/vitalwatch\", \"probe\"]\nCMD [\"serve\"]\n";
    let found = from_dockerfile(dockerfile);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].args, ["probe"]);
    assert!(found[0].env.is_empty());
    assert_eq!(found[1].args, ["serve"]);
    assert_eq!(found[1].env, ["A_B", "VITALWATCH_X"]);
    assert_eq!(dockerfile_exposed_ports(dockerfile).len(), 2);
}
