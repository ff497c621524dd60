//! Printing: JSON, aligned tables, and `--format` (a field list or a template).

use crate::Failure;
use corral::{format_time, ContainerInfo, Error, ExitStatus};
use std::io::Write;

/// Prints `value` as pretty JSON.
pub fn json<T: serde::Serialize>(value: &T) -> Result<i32, Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Internal(format!("encode JSON: {e}")))?;
    println!("{text}");
    Ok(0)
}

/// An exit code, or `-`.
pub fn exit_text(exit: Option<ExitStatus>) -> String {
    exit.map(|e| e.code.to_string())
        .unwrap_or_else(|| "-".into())
}

/// Prints rows under a header, columns padded to their widest cell.
pub fn table<S: AsRef<str>, R: AsRef<[String]>>(header: &[S], rows: &[R]) {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.as_ref().len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == n {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header.iter().map(AsRef::as_ref).collect()));
    for row in rows {
        let _ = writeln!(
            out,
            "{}",
            line(row.as_ref().iter().map(String::as_str).collect())
        );
    }
}

/// The columns of `list`, in order; `--format` may also name the extra ones.
pub const LIST_COLUMNS: [&str; 7] = [
    "ID", "STATUS", "PID", "EXIT", "RESTARTS", "CREATED", "LABELS",
];
/// Fields `--format` knows besides the table's columns.
pub const EXTRA_FIELDS: [&str; 3] = ["NAMESPACE", "BUNDLE", "RUNTIME"];

/// One field of a container, by its column name (upper case).
fn field(c: &ContainerInfo, name: &str) -> String {
    match name {
        "ID" => c.id.clone(),
        "STATUS" => c.status.to_string(),
        "PID" => c.pid.to_string(),
        "EXIT" => exit_text(c.exit),
        "RESTARTS" => c.restarts.to_string(),
        "CREATED" => format_time(c.created_at_ns),
        "LABELS" => labels_text(&c.labels),
        "NAMESPACE" => c.namespace.clone(),
        "BUNDLE" => c.bundle.display().to_string(),
        "RUNTIME" => c.runtime.display().to_string(),
        _ => String::new(),
    }
}

/// The row of the default table.
pub fn list_row(c: &ContainerInfo) -> Vec<String> {
    LIST_COLUMNS.iter().map(|f| field(c, f)).collect()
}

/// `--format`: `id,status,pid` (a table of those columns) or a template such as
/// `{{.ID}} {{.Status}}` (one line per container; `\t` and `\n` are understood).
#[derive(Clone, Debug)]
pub enum Format {
    /// A table of these columns.
    Fields(Vec<String>),
    /// Literal text and fields, in order.
    Template(Vec<Piece>),
}

/// A piece of a template.
#[derive(Clone, Debug)]
pub enum Piece {
    /// Printed as is.
    Text(String),
    /// A field, by column name.
    Field(String),
}

fn known_field(name: &str) -> Result<String, String> {
    let upper = name.trim().to_ascii_uppercase();
    if LIST_COLUMNS.contains(&upper.as_str()) || EXTRA_FIELDS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "unknown field {name:?}; known: {}",
            LIST_COLUMNS
                .iter()
                .chain(&EXTRA_FIELDS)
                .map(|f| f.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Parses `--format`.
pub fn parse_format(s: &str) -> Result<Format, String> {
    if !s.contains("{{") {
        let fields = s
            .split(',')
            .map(known_field)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Format::Fields(fields));
    }
    let s = s.replace("\\t", "\t").replace("\\n", "\n");
    let mut pieces = Vec::new();
    let mut rest = s.as_str();
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {s:?}"))?;
        let name = after[..end].trim();
        let name = name
            .strip_prefix('.')
            .ok_or_else(|| format!("{{{{{name}}}}}: fields are written {{{{.Name}}}}"))?;
        pieces.push(Piece::Field(known_field(name)?));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(Format::Template(pieces))
}

/// Prints containers as `format` says.
pub fn print_formatted(format: &Format, containers: &[ContainerInfo]) {
    match format {
        Format::Fields(fields) => {
            let rows: Vec<Vec<String>> = containers
                .iter()
                .map(|c| fields.iter().map(|f| field(c, f)).collect())
                .collect();
            table(fields, &rows);
        }
        Format::Template(pieces) => {
            let mut out = std::io::stdout().lock();
            for c in containers {
                let line: String = pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Text(t) => t.clone(),
                        Piece::Field(f) => field(c, f),
                    })
                    .collect();
                let _ = writeln!(out, "{line}");
            }
        }
    }
}

/// Labels as `k=v,k2=v2`.
pub fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A list the way every store's `ls` prints it: `--json` as JSON, `-q` one key a line,
/// else a table of `header` with a `row` per item.
pub fn listing<T: serde::Serialize>(
    items: &[T],
    as_json: bool,
    quiet: bool,
    key: impl Fn(&T) -> String,
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> Result<i32, Failure> {
    if as_json {
        return json(&items);
    }
    if quiet {
        for item in items {
            println!("{}", key(item));
        }
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    table(header, &rows);
    Ok(0)
}
