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

/// `limit` and `cursor`, as the OpenAPI document declares them (newest first, a page at a
/// time); [`Params`] parses them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "describes the query string in the OpenAPI document"
)]
pub struct PageParams {
    /// Rows per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^-?[0-9]{1,19}$")]
    cursor: Option<String>,
}

/// `since` and `until`, as the OpenAPI document declares them; [`Params::time`] parses them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "describes the query string in the OpenAPI document"
)]
pub struct WindowParams {
    /// From this time (inclusive): RFC 3339 (zone optional, UTC assumed) or epoch seconds or
    /// milliseconds.
    since: Option<String>,
    /// Until this time (inclusive), in the same forms.
    until: Option<String>,
}

/// `device_id` as a filter, as the OpenAPI document declares it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "describes the query string in the OpenAPI document"
)]
pub struct DeviceFilter {
    /// Only this device.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    device_id: Option<String>,
}
