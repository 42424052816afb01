//! Loading files: split into documents, parse YAML or JSON, route by kind, decode and validate.
//! One bad document never hides the others.

use crate::kind::{KindMatch, match_kind};
use crate::resource::{Resource, decode_resource, effective_namespace};
use crate::validate::FieldError;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    /// Zero-based index of the document in the file.
    pub doc: usize,
    /// Index within a `kind: List` document, if any.
    pub item: Option<usize>,
    /// One-based line where the document starts.
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} doc {}", self.file, self.doc)?;
        if let Some(i) = self.item {
            write!(f, " item {i}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Valid {
        resource: Box<Resource>,
        warnings: Vec<FieldError>,
    },
    Invalid {
        errors: Vec<FieldError>,
        warnings: Vec<FieldError>,
    },
    /// Not a mesh kind: skipped with a note, never an error.
    Skipped { note: String },
}

/// One loaded document (or List item).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub source: Source,
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub outcome: Outcome,
}

impl Entry {
    pub fn is_invalid(&self) -> bool {
        matches!(self.outcome, Outcome::Invalid { .. })
    }

    /// `Kind namespace/name` (or `Kind name` for cluster-scoped, `<unknown>` when unreadable).
    pub fn label(&self) -> String {
        let kind = if self.kind.is_empty() {
            "<unknown kind>"
        } else {
            &self.kind
        };
        let name = if self.name.is_empty() {
            "<unnamed>"
        } else {
            &self.name
        };
        if self.namespace.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {}/{name}", self.namespace)
        }
    }
}

impl fmt::Display for Entry {
    /// One line: `FILE doc N: Kind ns/name: OK` or the errors, `; `-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.source, self.label())?;
        match &self.outcome {
            Outcome::Valid { warnings, .. } => {
                f.write_str("OK")?;
                for w in warnings {
                    write!(f, " (warning: {w})")?;
                }
                Ok(())
            }
            Outcome::Invalid { errors, .. } => {
                let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                write!(f, "ERROR {}", all.join("; "))
            }
            Outcome::Skipped { note } => write!(f, "SKIPPED ({note})"),
        }
    }
}

/// A document's text and the line it starts on.
struct Doc<'a> {
    text: &'a str,
    line: usize,
}

/// Splits a YAML stream on `---` lines (and `...` ends), as kubectl does.
fn split_documents(text: &str) -> Vec<Doc<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        let is_sep = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "...";
        if is_sep || is_end {
            docs.push(Doc {
                text: &text[start..offset],
                line: start_line,
            });
            start = if is_sep && bare.len() > 3 {
                offset + 3
            } else {
                offset + line.len()
            };
            start_line = if is_sep && bare.len() > 3 {
                n + 1
            } else {
                n + 2
            };
        }
        offset += line.len();
    }
    docs.push(Doc {
        text: &text[start..],
        line: start_line,
    });
    docs
}

fn is_blank(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

/// Loads every document in `text`, which came from `file` (used only in messages).
pub fn load_str(file: &str, text: &str) -> Vec<Entry> {
    let trimmed = text.trim_start();
    let json = file.ends_with(".json") || trimmed.starts_with('{') || trimmed.starts_with('[');
    if json {
        let source = Source {
            file: file.to_string(),
            doc: 0,
            item: None,
            line: 1,
        };
        return match serde_json::from_str::<Value>(text) {
            Ok(v) => load_value(source, v),
            Err(e) => vec![parse_failure(source, format!("invalid JSON: {e}"))],
        };
    }
    let mut out = Vec::new();
    for (doc, d) in split_documents(text).into_iter().enumerate() {
        if is_blank(d.text) {
            continue;
        }
        let source = Source {
            file: file.to_string(),
            doc,
            item: None,
            line: d.line,
        };
        match serde_saphyr::from_str::<Value>(d.text) {
            Ok(v) => out.extend(load_value(source, v)),
            Err(e) => out.push(parse_failure(source, yaml_error(&e, d.line))),
        }
    }
    out
}

fn yaml_error(e: &serde_saphyr::Error, first_line: usize) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first);
    // The parser counts lines from the document start; report them from the file start.
    let (message, column) = match message
        .strip_prefix("line ")
        .and_then(|r| r.split_once(": "))
    {
        Some((pos, rest)) => (rest, pos.split_once(" column ").map(|(_, c)| c.to_string())),
        None => (message, None),
    };
    let message = message.trim_end_matches(", set DuplicateKeyPolicy in Options if acceptable");
    match (e.location(), column) {
        (Some(l), Some(c)) => format!(
            "invalid YAML at line {} column {c}: {message}",
            l.line() as usize + first_line - 1
        ),
        (Some(l), None) => format!(
            "invalid YAML at line {}: {message}",
            l.line() as usize + first_line - 1
        ),
        _ => format!("invalid YAML: {message}"),
    }
}

fn parse_failure(source: Source, message: String) -> Entry {
    Entry {
        source,
        api_version: String::new(),
        kind: String::new(),
        namespace: String::new(),
        name: String::new(),
        outcome: Outcome::Invalid {
            errors: vec![FieldError {
                path: String::new(),
                message,
            }],
            warnings: vec![],
        },
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return "",
        }
    }
    cur.as_str().unwrap_or_default()
}

fn load_value(source: Source, v: Value) -> Vec<Entry> {
    if v.is_null() {
        return vec![];
    }
    let kind = str_at(&v, &["kind"]).to_string();
    if kind == "List" || kind.ends_with("List") && v.get("items").is_some_and(Value::is_array) {
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        return items
            .into_iter()
            .enumerate()
            .flat_map(|(i, item)| {
                let mut s = source.clone();
                s.item = Some(i);
                load_value(s, item)
            })
            .collect();
    }
    load_object(source, v)
}

fn load_object(source: Source, v: Value) -> Vec<Entry> {
    let api_version = str_at(&v, &["apiVersion"]).to_string();
    let kind = str_at(&v, &["kind"]).to_string();
    let mut entry = Entry {
        source,
        api_version: api_version.clone(),
        kind: kind.clone(),
        namespace: str_at(&v, &["metadata", "namespace"]).to_string(),
        name: str_at(&v, &["metadata", "name"]).to_string(),
        outcome: Outcome::Skipped {
            note: String::new(),
        },
    };
    let Some(obj) = v.as_object() else {
        entry.outcome = invalid(
            "",
            "document is not a mapping (expected an object with apiVersion and kind)",
        );
        return vec![entry];
    };
    if kind.is_empty() || api_version.is_empty() {
        let field = if api_version.is_empty() {
            "apiVersion"
        } else {
            "kind"
        };
        entry.outcome = invalid(field, "Required value: apiVersion and kind must be set");
        return vec![entry];
    }
    match match_kind(&api_version, &kind) {
        KindMatch::Other => {
            entry.outcome = Outcome::Skipped {
                note: format!("{api_version} {kind} is not a mesh kind"),
            };
        }
        KindMatch::UnservedVersion(msg) => entry.outcome = invalid("apiVersion", &msg),
        KindMatch::Mesh(k) => {
            let (resource, report) = decode_resource(k, &api_version, obj);
            if let Some(r) = &resource {
                entry.namespace = effective_namespace(k, &r.metadata).to_string();
            }
            entry.outcome = match resource {
                Some(r) if report.is_ok() => Outcome::Valid {
                    resource: Box::new(r),
                    warnings: report.warnings,
                },
                _ => Outcome::Invalid {
                    errors: report.errors,
                    warnings: report.warnings,
                },
            };
        }
    }
    vec![entry]
}

fn invalid(path: &str, message: &str) -> Outcome {
    Outcome::Invalid {
        errors: vec![FieldError {
            path: path.to_string(),
            message: message.to_string(),
        }],
        warnings: vec![],
    }
}

/// Files under `path` that hold config: the file itself, or `*.yaml|*.yml|*.json` below a directory,
/// sorted, hidden files and editor temporaries skipped.
pub fn config_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else if is_config_name(name) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn is_config_name(name: &str) -> bool {
    !name.starts_with('.')
        && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
}

/// Loads one file or every config file under a directory.
pub fn load_path(path: &Path) -> Result<Vec<Entry>, String> {
    let files = config_files(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        out.extend(load_str(&f.display().to_string(), &text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_lines() {
        let docs = split_documents("a: 1\n---\nb: 2\n--- # c\nc: 3\n...\n");
        let texts: Vec<(&str, usize)> = docs.iter().map(|d| (d.text, d.line)).collect();
        assert_eq!(
            texts,
            vec![("a: 1\n", 1), ("b: 2\n", 3), (" # c\nc: 3\n", 4), ("", 7)]
        );
    }

    #[test]
    fn skips_non_mesh_kinds_and_blank_docs() {
        let out = load_str(
            "x.yaml",
            "# only a comment\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].to_string(),
            "x.yaml doc 1: Deployment /web: SKIPPED (apps/v1 Deployment is not a mesh kind)"
                .replace(" /web", " web")
        );
    }

    #[test]
    fn yaml_errors_name_the_document() {
        let out = load_str("bad.yaml", "apiVersion: v1\nkind: Service\n---\na: [\n");
        assert_eq!(out.len(), 2);
        assert!(
            out[1]
                .to_string()
                .starts_with("bad.yaml doc 1: <unknown kind> <unnamed>: ERROR invalid YAML"),
            "{}",
            out[1]
        );
    }
}

#[cfg(test)]
mod yaml_shape_tests {
    use serde_json::Value;

    #[test]
    fn integer_map_keys_become_strings() {
        let v: Value = serde_saphyr::from_str("m:\n  8080:\n    mode: STRICT\n").unwrap();
        assert_eq!(v["m"]["8080"]["mode"], "STRICT");
    }
}
