//! The subnet's training CSV: `session_id`, the 40 features by name, then
//! `conversion_happened`, `time_to_conversion_seconds`,
//! `time_to_conversion_minutes`.
//!
//! Columns are found by header name, so any order (and extra columns) load
//! the same. A bad cell stops the load with its 1-based line and column and
//! the column's name: a training set with one corrupt row should be fixed,
//! not silently thinned. `gen` writes this same format, so everything the
//! trainer reads from the generator can also be read back from a file.

use cm_core::schema::{FEATURE_NAMES, N_FEATURES};
use std::fmt;
use std::io::{BufRead, Write};

pub const COL_SESSION: &str = "session_id";
pub const COL_LABEL: &str = "conversion_happened";
pub const COL_TIME: &str = "time_to_conversion_seconds";
pub const COL_MINUTES: &str = "time_to_conversion_minutes";

/// One labelled conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub session_id: String,
    pub raw: [f64; N_FEATURES],
    pub label: u8,
    /// Seconds to conversion, -1.0 when not converted.
    pub time: f64,
}

/// Why a CSV could not be loaded.
#[derive(Debug, Clone, PartialEq)]
pub enum CsvError {
    Io(String),
    Empty,
    /// A required column is absent from the header.
    MissingColumn(&'static str),
    DuplicateColumn {
        column: usize,
        name: String,
    },
    /// A row has fewer cells than the header.
    ShortRow {
        line: usize,
        cells: usize,
        expected: usize,
    },
    /// A cell does not hold what its column needs.
    BadCell {
        line: usize,
        column: usize,
        name: String,
        value: String,
        why: &'static str,
    },
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvError::Io(e) => write!(f, "read error: {e}"),
            CsvError::Empty => write!(f, "empty file: no header line"),
            CsvError::MissingColumn(c) => write!(f, "line 1: header has no column `{c}`"),
            CsvError::DuplicateColumn { column, name } => {
                write!(f, "line 1, column {column}: column `{name}` appears twice")
            }
            CsvError::ShortRow {
                line,
                cells,
                expected,
            } => {
                write!(f, "line {line}: {cells} cells, the header has {expected}")
            }
            CsvError::BadCell {
                line,
                column,
                name,
                value,
                why,
            } => {
                write!(
                    f,
                    "line {line}, column {column} (`{name}`): {why}: {value:?}"
                )
            }
        }
    }
}
impl std::error::Error for CsvError {}

/// Split one CSV line; double-quoted cells may hold commas and `""`.
fn split_line(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => cells.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    cells.push(cur);
    cells
}

/// Where each needed field sits in the file's columns.
struct Layout {
    session: Option<usize>,
    features: [usize; N_FEATURES],
    label: usize,
    time: usize,
    names: Vec<String>,
}

fn layout(header: &str) -> Result<Layout, CsvError> {
    let names: Vec<String> = split_line(header.trim_end_matches(['\r', '\n']))
        .into_iter()
        .map(|s| s.trim().trim_start_matches('\u{feff}').to_string())
        .collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(CsvError::DuplicateColumn {
                column: i + 1,
                name: n.clone(),
            });
        }
    }
    let find = |name: &'static str| {
        names
            .iter()
            .position(|n| n == name)
            .ok_or(CsvError::MissingColumn(name))
    };
    let mut features = [0usize; N_FEATURES];
    for (slot, name) in features.iter_mut().zip(FEATURE_NAMES.iter()) {
        *slot = find(name)?;
    }
    Ok(Layout {
        session: names.iter().position(|n| n == COL_SESSION),
        features,
        label: find(COL_LABEL)?,
        time: find(COL_TIME)?,
        names,
    })
}

/// Load every row of a training CSV.
pub fn load<R: BufRead>(reader: R) -> Result<Vec<Row>, CsvError> {
    let mut lines = reader.lines();
    let header = match lines.next() {
        None => return Err(CsvError::Empty),
        Some(h) => h.map_err(|e| CsvError::Io(e.to_string()))?,
    };
    let lay = layout(&header)?;
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let line_no = i + 2;
        let line = line.map_err(|e| CsvError::Io(format!("line {line_no}: {e}")))?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let cells = split_line(line);
        if cells.len() < lay.names.len() {
            return Err(CsvError::ShortRow {
                line: line_no,
                cells: cells.len(),
                expected: lay.names.len(),
            });
        }
        let bad = |col: usize, why: &'static str| CsvError::BadCell {
            line: line_no,
            column: col + 1,
            name: lay.names[col].clone(),
            value: cells[col].clone(),
            why,
        };
        let num = |col: usize| -> Result<f64, CsvError> {
            let v: f64 = cells[col]
                .trim()
                .parse()
                .map_err(|_| bad(col, "not a number"))?;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(bad(col, "not a finite number"))
            }
        };
        let mut raw = [0.0; N_FEATURES];
        for (k, &col) in lay.features.iter().enumerate() {
            raw[k] = num(col)?;
        }
        let label_value = num(lay.label)?;
        let label = if label_value == 0.0 {
            0u8
        } else if label_value == 1.0 {
            1u8
        } else {
            return Err(bad(lay.label, "label must be 0 or 1"));
        };
        let time = num(lay.time)?;
        if label == 1 && time <= 0.0 {
            return Err(bad(lay.time, "a converted row needs a positive time"));
        }
        rows.push(Row {
            session_id: lay.session.map(|c| cells[c].clone()).unwrap_or_default(),
            raw,
            label,
            time: if label == 1 { time } else { -1.0 },
        });
    }
    Ok(rows)
}

/// The header `gen` writes: the canonical column order.
pub fn write_header<W: Write>(w: &mut W) -> std::io::Result<()> {
    write!(w, "{COL_SESSION}")?;
    for n in FEATURE_NAMES.iter() {
        write!(w, ",{n}")?;
    }
    writeln!(w, ",{COL_LABEL},{COL_TIME},{COL_MINUTES}")
}

/// One row; floats in Rust's shortest round-trip form, so reading the file
/// back gives the same values bit for bit. Minutes are seconds / 60 at 4dp
/// (-1.0 when not converted).
pub fn write_row<W: Write>(w: &mut W, row: &Row) -> std::io::Result<()> {
    write!(w, "{}", row.session_id)?;
    for v in row.raw.iter() {
        write!(w, ",{v}")?;
    }
    let minutes = if row.label == 1 {
        crate::gen::py_round(row.time / 60.0, 4)
    } else {
        -1.0
    };
    writeln!(w, ",{},{},{}", row.label, row.time, minutes)
}
