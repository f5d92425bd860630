//! Fuzz target: the payload decoder must never panic, and anything it accepts must be sane.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitalwatch_core::rules::{self, RuleSet};
use vitalwatch_core::telemetry::{self, Limits, Timestamp};

const NOW: Timestamp = Timestamp::from_micros(1_705_401_045_000_000);

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let rules = RuleSet::default();
    let mut findings = Vec::new();
    if let Ok(reading) = telemetry::decode(data, NOW, &limits) {
        for value in [reading.heart_rate_bpm, reading.body_temp_c, reading.battery_pct]
            .into_iter()
            .flatten()
        {
            assert!(value.is_finite());
        }
        assert!(!reading.device_id.as_str().is_empty());
        rules::check(&reading, &rules, &mut findings);
    }
    if let Ok(telemetry::Decoded::Batch(items)) = telemetry::decode_body(data, NOW, &limits) {
        assert!(!items.is_empty() && items.len() <= limits.max_batch_len);
    }
});
