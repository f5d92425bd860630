//! Query-string parsing with precise 400s: times, limits and cursors.

use super::ApiError;
use std::collections::HashMap;
use vitalwatch_core::telemetry::Timestamp;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The query string as key → value; a repeated key is an error (which one would we use?).
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|_| ApiError::bad_request("invalid_query", "the query string is malformed"))?;
        let mut map = HashMap::new();
        for (key, value) in pairs {
            if !allowed.contains(&key.as_str()) {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!(
                        "unknown query parameter {key:?}; allowed: {}",
                        allowed.join(", ")
                    ),
                ));
            }
            if map.insert(key.clone(), value).is_some() {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("query parameter {key:?} is given more than once"),
                ));
            }
        }
        Ok(Params(map))
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// RFC 3339 (zone optional, UTC assumed) or epoch seconds/milliseconds.
    pub fn time(&self, key: &str) -> Result<Option<Timestamp>, ApiError> {
        let Some(raw) = self.text(key) else {
            return Ok(None);
        };
        let parsed = Timestamp::parse_text(raw)
            .or_else(|| raw.parse::<f64>().ok().and_then(Timestamp::parse_epoch));
        parsed.map(Some).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("{key} must be an RFC 3339 time or epoch seconds/milliseconds"),
            )
        })
    }

    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.text("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(
                    "invalid_query",
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                )),
            },
        }
    }

    /// The opaque pagination cursor of a previous page (`next_cursor`).
    pub fn cursor(&self) -> Result<Option<i64>, ApiError> {
        match self.text("cursor") {
            None => Ok(None),
            Some(raw) => raw.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request("invalid_query", "cursor must be a next_cursor value")
            }),
        }
    }
}

/// `next_cursor` for a page: present only when the page was full.
pub fn next_cursor(ids: impl Iterator<Item = i64>, len: usize, limit: usize) -> Option<String> {
    if len < limit {
        return None;
    }
    ids.min().map(|id| id.to_string())
}
