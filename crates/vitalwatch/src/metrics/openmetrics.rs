//! The exposition in OpenMetrics 1.0, for scrapers that ask for it: a pure rewrite of the
//! text format 0.0.4 that metrics-exporter-prometheus renders (the exporter renders nothing
//! else). The two formats share their sample lines; OpenMetrics names a counter's family
//! without its `_total` suffix, forbids blank lines and ends with `# EOF`.

/// The `Content-Type` of [`from_text`]'s answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (Prometheus lists it first, with 0.0.4 as
/// its fallback; a scraper that sends no `Accept` gets 0.0.4).
pub fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let kind = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "") == "q=0");
            kind.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

/// Rewrites a text 0.0.4 exposition as OpenMetrics 1.0.
pub fn from_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    // The counter families whose samples end in `_total`, read once (HELP may precede TYPE).
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .filter(|name| name.ends_with("_total"))
        .collect();
    // Counters whose samples lack `_total` are declared `unknown` (OpenMetrics requires it).
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            match (kind.trim(), name.strip_suffix("_total")) {
                ("counter", Some(family)) => push_line(&mut out, &["# TYPE ", family, " counter"]),
                ("counter", None) => push_line(&mut out, &["# TYPE ", name, " unknown"]),
                (kind, _) => push_line(&mut out, &["# TYPE ", name, " ", kind]),
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let family = if counters.contains(name) {
                name.strip_suffix("_total").unwrap_or(name)
            } else {
                name
            };
            push_line(&mut out, &["# HELP ", family, " ", help]);
            continue;
        }
        if line.starts_with('#') {
            // Any other comment is not OpenMetrics; drop it.
            continue;
        }
        push_line(&mut out, &[line]);
    }
    out.push_str("# EOF\n");
    out
}

fn push_line(out: &mut String, parts: &[&str]) {
    for part in parts {
        out.push_str(part);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP vitalwatch_readings_stored_total Readings committed.
# TYPE vitalwatch_readings_stored_total counter
vitalwatch_readings_stored_total{transport=\"mqtt\"} 7

# TYPE odd_counter counter
odd_counter 1

# HELP vitalwatch_store_queue_depth Queued.
# TYPE vitalwatch_store_queue_depth gauge
vitalwatch_store_queue_depth 0

# TYPE vitalwatch_ack_latency_seconds histogram
vitalwatch_ack_latency_seconds_bucket{le=\"0.005\"} 1
vitalwatch_ack_latency_seconds_bucket{le=\"+Inf\"} 2
vitalwatch_ack_latency_seconds_sum 0.01
vitalwatch_ack_latency_seconds_count 2
";

    #[test]
    fn counters_lose_total_in_their_family_name_and_the_answer_ends_with_eof() {
        let om = from_text(TEXT);
        assert!(
            om.contains("# TYPE vitalwatch_readings_stored counter\n"),
            "{om}"
        );
        assert!(
            om.contains("# HELP vitalwatch_readings_stored Readings committed.\n"),
            "{om}"
        );
        assert!(
            om.contains("vitalwatch_readings_stored_total{transport=\"mqtt\"} 7\n"),
            "{om}"
        );
        assert!(om.contains("# TYPE odd_counter unknown\n"), "{om}");
        assert!(
            om.contains("# TYPE vitalwatch_store_queue_depth gauge\n"),
            "{om}"
        );
        assert!(
            om.contains("vitalwatch_ack_latency_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{om}"
        );
        assert!(!om.contains("\n\n"), "no blank line: {om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert_eq!(om.matches("# EOF").count(), 1);
    }

    #[test]
    fn openmetrics_is_chosen_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wanted(Some(prometheus)));
        assert!(wanted(Some("Application/OpenMetrics-Text")));
        assert!(!wanted(Some("text/plain;version=0.0.4")));
        assert!(!wanted(Some("*/*")));
        assert!(!wanted(Some("application/openmetrics-text;q=0")));
        assert!(!wanted(None));
    }
}
