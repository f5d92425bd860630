//! Builds `WHERE a AND b …` from optional conditions, with numbered parameters, for the list
//! queries (readings, anomalies, alerts). Clauses are constants of the caller; only values
//! come from a request, and they are always bound, never spliced into the SQL.

/// Conditions and their bound values, in parameter order.
pub(super) struct Filter {
    clauses: Vec<String>,
    pub(super) values: Vec<rusqlite::types::Value>,
}

impl Filter {
    pub(super) fn new() -> Filter {
        Filter {
            clauses: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds `clause`, whose one `?` stands for `value`.
    pub(super) fn add(&mut self, clause: &str, value: impl Into<rusqlite::types::Value>) {
        self.values.push(value.into());
        self.clauses
            .push(clause.replace('?', &format!("?{}", self.values.len())));
    }

    /// The `WHERE …` text, or nothing when no condition was added.
    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}
