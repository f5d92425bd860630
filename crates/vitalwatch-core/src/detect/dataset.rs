//! [`Dataset`]: training and test data as columns of features (plus optional labels), and its
//! CSV form.
//!
//! CSV columns are named like the payload fields (`heart_rate`, `body_temp`, …); a `label`
//! column (0/1 or true/false) marks anomalies in a test set. A header is required, unknown
//! columns are ignored, and an empty cell is a missing value. Text comes in and goes out: the
//! caller reads and writes files. Parsing uses the `csv` crate for quoting and line tracking.

use super::feature::Feature;

/// The name of the optional label column.
pub const LABEL_COLUMN: &str = "label";

/// Columns of equal length, one per feature present, in the order first seen.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    columns: Vec<(Feature, Vec<Option<f64>>)>,
    /// True marks an anomalous row; present in labelled test sets only.
    labels: Option<Vec<bool>>,
    n_rows: usize,
}

/// Why a set of columns is not a dataset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DatasetError {
    #[error("column {0} appears twice")]
    DuplicateColumn(&'static str),
    #[error("columns differ in length ({expected} rows expected, {got} found)")]
    RaggedColumns { expected: usize, got: usize },
    #[error("column {column} holds a value that is not finite")]
    NonFinite { column: &'static str },
}

/// Why CSV text could not be read. Line numbers count from 1 and include the header.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("the CSV has no header row")]
    NoHeader,
    #[error("the CSV header names no known feature column (expected some of: {expected})")]
    NoFeatureColumn { expected: String },
    #[error("column {0} appears twice in the CSV header")]
    DuplicateColumn(String),
    #[error("line {line}, column {column}: {cell:?} is not a finite number")]
    BadNumber {
        line: u64,
        column: &'static str,
        cell: String,
    },
    #[error("line {line}, column label: {cell:?} is not 0, 1, true or false")]
    BadLabel { line: u64, cell: String },
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
}

/// The longest cell text quoted back in an error.
const MAX_CELL_IN_ERROR: usize = 40;

impl Dataset {
    /// Builds a dataset from columns (and optional labels) of equal length.
    pub fn new(
        columns: Vec<(Feature, Vec<Option<f64>>)>,
        labels: Option<Vec<bool>>,
    ) -> Result<Dataset, DatasetError> {
        let n_rows = columns
            .first()
            .map(|(_, values)| values.len())
            .or(labels.as_ref().map(Vec::len))
            .unwrap_or(0);
        for (idx, (feature, values)) in columns.iter().enumerate() {
            if columns[..idx].iter().any(|(seen, _)| seen == feature) {
                return Err(DatasetError::DuplicateColumn(feature.as_str()));
            }
            if values.len() != n_rows {
                return Err(DatasetError::RaggedColumns {
                    expected: n_rows,
                    got: values.len(),
                });
            }
            if values.iter().flatten().any(|value| !value.is_finite()) {
                return Err(DatasetError::NonFinite {
                    column: feature.as_str(),
                });
            }
        }
        if let Some(labels) = &labels
            && labels.len() != n_rows
        {
            return Err(DatasetError::RaggedColumns {
                expected: n_rows,
                got: labels.len(),
            });
        }
        Ok(Dataset {
            columns,
            labels,
            n_rows,
        })
    }

    /// Builds a dataset from complete rows, each holding `features` in order.
    pub fn from_rows(features: &[Feature], rows: &[Vec<f64>]) -> Result<Dataset, DatasetError> {
        let mut columns: Vec<(Feature, Vec<Option<f64>>)> = features
            .iter()
            .map(|feature| (*feature, Vec::with_capacity(rows.len())))
            .collect();
        for row in rows {
            if row.len() != features.len() {
                return Err(DatasetError::RaggedColumns {
                    expected: features.len(),
                    got: row.len(),
                });
            }
            for ((_, column), value) in columns.iter_mut().zip(row) {
                column.push(Some(*value));
            }
        }
        if features.is_empty() {
            return Ok(Dataset {
                columns,
                labels: None,
                n_rows: rows.len(),
            });
        }
        Dataset::new(columns, None)
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// The features present, in column order.
    pub fn features(&self) -> Vec<Feature> {
        self.columns.iter().map(|(feature, _)| *feature).collect()
    }

    pub fn column(&self, feature: Feature) -> Option<&[Option<f64>]> {
        self.columns
            .iter()
            .find(|(present, _)| *present == feature)
            .map(|(_, values)| values.as_slice())
    }

    pub fn labels(&self) -> Option<&[bool]> {
        self.labels.as_deref()
    }

    /// The rows that have every one of `features`, as a row-major matrix, with their row
    /// indices. `Err(feature)` names a feature with no column at all.
    pub fn complete_rows(&self, features: &[Feature]) -> Result<(Vec<f64>, Vec<usize>), Feature> {
        let columns: Vec<&[Option<f64>]> = features
            .iter()
            .map(|feature| self.column(*feature).ok_or(*feature))
            .collect::<Result<_, _>>()?;
        let mut matrix = Vec::with_capacity(self.n_rows * features.len());
        let mut kept = Vec::with_capacity(self.n_rows);
        for row_idx in 0..self.n_rows {
            if columns.iter().all(|column| column[row_idx].is_some()) {
                matrix.extend(columns.iter().map(|column| column[row_idx].unwrap_or(0.0)));
                kept.push(row_idx);
            }
        }
        Ok((matrix, kept))
    }

    /// Parses CSV text (see the module docs for the accepted shape).
    pub fn from_csv(text: &str) -> Result<Dataset, CsvError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let header = reader.headers().map_err(malformed)?.clone();
        if header.is_empty() || header.iter().all(str::is_empty) {
            return Err(CsvError::NoHeader);
        }
        let mut feature_cols: Vec<(usize, Feature)> = Vec::new();
        let mut label_col = None;
        for (idx, name) in header.iter().enumerate() {
            let is_duplicate = header.iter().take(idx).any(|seen| seen == name);
            let known = Feature::from_name(name).is_some() || name == LABEL_COLUMN;
            if is_duplicate && known {
                return Err(CsvError::DuplicateColumn(name.to_owned()));
            }
            if let Some(feature) = Feature::from_name(name) {
                feature_cols.push((idx, feature));
            } else if name == LABEL_COLUMN {
                label_col = Some(idx);
            }
        }
        if feature_cols.is_empty() {
            let expected = Feature::ALL.map(Feature::as_str).join(", ");
            return Err(CsvError::NoFeatureColumn { expected });
        }
        let mut columns: Vec<(Feature, Vec<Option<f64>>)> = feature_cols
            .iter()
            .map(|(_, feature)| (*feature, Vec::new()))
            .collect();
        let mut labels = label_col.map(|_| Vec::new());
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => return Err(malformed(err)),
            }
            let line = record.position().map_or(0, csv::Position::line);
            for ((col_idx, feature), (_, column)) in feature_cols.iter().zip(columns.iter_mut()) {
                let cell = record.get(*col_idx).unwrap_or("");
                column.push(parse_number(cell, line, *feature)?);
            }
            if let (Some(col_idx), Some(labels)) = (label_col, labels.as_mut()) {
                labels.push(parse_label(record.get(col_idx).unwrap_or(""), line)?);
            }
        }
        Dataset::new(columns, labels).map_err(|err| CsvError::Malformed {
            line: 0,
            message: err.to_string(),
        })
    }

    /// CSV text with a header: every feature column, then `label` when labelled. Numbers are
    /// written in Rust's shortest round-trip form, so parsing gives back the same values.
    pub fn to_csv(&self) -> String {
        let mut out = String::with_capacity(self.n_rows * 8 * (self.columns.len() + 1));
        let mut names: Vec<&str> = self
            .columns
            .iter()
            .map(|(feature, _)| feature.as_str())
            .collect();
        if self.labels.is_some() {
            names.push(LABEL_COLUMN);
        }
        out.push_str(&names.join(","));
        out.push('\n');
        for row_idx in 0..self.n_rows {
            for (col_idx, (_, values)) in self.columns.iter().enumerate() {
                if col_idx > 0 {
                    out.push(',');
                }
                if let Some(value) = values[row_idx] {
                    out.push_str(&value.to_string());
                }
            }
            if let Some(labels) = &self.labels {
                if !self.columns.is_empty() {
                    out.push(',');
                }
                out.push(if labels[row_idx] { '1' } else { '0' });
            }
            out.push('\n');
        }
        out
    }
}

fn malformed(err: csv::Error) -> CsvError {
    let line = err.position().map_or(0, csv::Position::line);
    let message = match err.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields, found {len}")
        }
        csv::ErrorKind::Utf8 { .. } => "the text is not valid UTF-8".to_owned(),
        _ => err.to_string(),
    };
    CsvError::Malformed { line, message }
}

fn shorten(cell: &str) -> String {
    cell.chars().take(MAX_CELL_IN_ERROR).collect()
}

fn parse_number(cell: &str, line: u64, feature: Feature) -> Result<Option<f64>, CsvError> {
    if cell.is_empty() {
        return Ok(None);
    }
    match cell.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Some(value)),
        _ => Err(CsvError::BadNumber {
            line,
            column: feature.as_str(),
            cell: shorten(cell),
        }),
    }
}

fn parse_label(cell: &str, line: u64) -> Result<bool, CsvError> {
    match cell.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(CsvError::BadLabel {
            line,
            cell: shorten(cell),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_columns_ignores_extra_and_reads_labels() {
        let text = "device_id,heart_rate,body_temp,label\n\
                    a,72,36.8,0\n\
                    b,,39.5,true\n";
        let data = Dataset::from_csv(text).expect("valid CSV");
        assert_eq!(data.n_rows(), 2);
        assert_eq!(data.features(), vec![Feature::HeartRate, Feature::BodyTemp]);
        assert_eq!(
            data.column(Feature::HeartRate),
            Some(&[Some(72.0), None][..])
        );
        assert_eq!(data.labels(), Some(&[false, true][..]));
        let (matrix, kept) = data
            .complete_rows(&[Feature::BodyTemp, Feature::HeartRate])
            .expect("both columns exist");
        assert_eq!(matrix, vec![36.8, 72.0]);
        assert_eq!(kept, vec![0]);
        assert_eq!(
            data.complete_rows(&[Feature::Spo2]).err(),
            Some(Feature::Spo2)
        );
    }

    fn error_of(text: &str) -> String {
        match Dataset::from_csv(text) {
            Ok(data) => panic!("expected an error, parsed {} rows", data.n_rows()),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn errors_name_the_line_and_column() {
        assert_eq!(
            error_of("heart_rate,body_temp\n72,36.8\n70,hot\n"),
            "line 3, column body_temp: \"hot\" is not a finite number"
        );
        assert_eq!(
            error_of("heart_rate\n72\nNaN\n"),
            "line 3, column heart_rate: \"NaN\" is not a finite number"
        );
        assert_eq!(
            error_of("heart_rate,label\n72,maybe\n"),
            "line 2, column label: \"maybe\" is not 0, 1, true or false"
        );
        assert_eq!(
            error_of("heart_rate,body_temp\n72,36.8\n70\n"),
            "line 3: expected 2 fields, found 1"
        );
        assert_eq!(error_of(""), "the CSV has no header row");
        assert!(
            error_of("temperature,pulse\n1,2\n")
                .starts_with("the CSV header names no known feature")
        );
        assert_eq!(
            error_of("heart_rate,heart_rate\n1,2\n"),
            "column heart_rate appears twice in the CSV header"
        );
    }

    #[test]
    fn csv_round_trip_is_exact() {
        let columns = vec![
            (
                Feature::HeartRate,
                vec![Some(72.123_456_789_012_34), None, Some(0.1 + 0.2)],
            ),
            (
                Feature::BodyTemp,
                vec![Some(36.8), Some(-0.0), Some(1e-300)],
            ),
        ];
        let data = Dataset::new(columns, Some(vec![false, true, false])).expect("valid");
        let back = Dataset::from_csv(&data.to_csv()).expect("our own CSV parses");
        assert_eq!(back, data);
    }

    #[test]
    fn new_refuses_inconsistent_columns() {
        let ragged = vec![
            (Feature::HeartRate, vec![Some(1.0)]),
            (Feature::BodyTemp, vec![]),
        ];
        assert!(matches!(
            Dataset::new(ragged, None),
            Err(DatasetError::RaggedColumns { .. })
        ));
        let twice = vec![(Feature::HeartRate, vec![]), (Feature::HeartRate, vec![])];
        assert!(matches!(
            Dataset::new(twice, None),
            Err(DatasetError::DuplicateColumn(_))
        ));
        let nan = vec![(Feature::HeartRate, vec![Some(f64::NAN)])];
        assert!(matches!(
            Dataset::new(nan, None),
            Err(DatasetError::NonFinite { .. })
        ));
    }
}
