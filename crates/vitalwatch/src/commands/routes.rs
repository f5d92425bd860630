//! `vitalwatch routes`: the API's and dashboard's route table, with the access each needs.

/// Prints the route table: what each route needs.
pub fn run() {
    println!(
        "{:<8} {:<36} {:<14} AUDITED READ",
        "METHOD", "PATH", "ACCESS"
    );
    let mut seen = std::collections::HashSet::new();
    for rule in crate::api::route_table(true) {
        if !seen.insert((rule.method.clone(), rule.path)) {
            continue;
        }
        let access = serde_json::to_value(rule.access)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{:<8} {:<36} {:<14} {}",
            rule.method.as_str(),
            rule.path,
            access,
            if rule.patient_data { "yes" } else { "" }
        );
    }
}
