//! YAML output in the style Kubernetes tools print (sigs.k8s.io/yaml over go-yaml v2):
//! sorted keys, two-space indent, sequences not indented under their key, `{}`/`[]` for empties,
//! strings quoted only when needed (double quotes when they would read as another type,
//! single quotes when plain style is not allowed).

use serde_json::Value;
use std::fmt::Write;

/// Renders a value as a YAML document (no leading `---`), ending in a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for k in keys {
        let v = &m[k];
        let _ = write!(out, "{:indent$}{}:", "", string(k));
        write_value_after_key(out, v, indent);
    }
}

/// Writes what follows `key:`.
fn write_value_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, a, indent);
        }
        other => {
            let _ = writeln!(out, " {}", scalar(other));
        }
    }
}

fn write_seq(out: &mut String, a: &[Value], indent: usize) {
    for v in a {
        let _ = write!(out, "{:indent$}-", "");
        match v {
            Value::Object(m) if !m.is_empty() => {
                // First key on the dash line, the rest indented under it.
                let mut inner = String::new();
                write_map(&mut inner, m, indent + 2);
                out.push(' ');
                out.push_str(&inner[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, indent + 2);
            }
            other => {
                let _ = writeln!(out, " {}", scalar(other));
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// Would a plain scalar with this text be read back as something other than a string?
fn resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y",
        "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF", ".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN", "<<",
    ];
    if SPECIAL.contains(&s) {
        return true;
    }
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    let numeric = !t.is_empty()
        && (t.parse::<f64>().is_ok()
            || t.strip_prefix("0x")
                .is_some_and(|h| u64::from_str_radix(h, 16).is_ok())
            || t.strip_prefix("0o")
                .is_some_and(|o| u64::from_str_radix(o, 8).is_ok())
            || t.replace('_', "").parse::<f64>().is_ok());
    numeric && !t.chars().all(|c| c.is_ascii_alphabetic())
}

fn plain_allowed(s: &str) -> bool {
    let first = s.chars().next().unwrap_or(' ');
    let indicator = "-?:,[]{}#&*!|>'\"%@`".contains(first);
    let dash_like = matches!(first, '-' | '?' | ':') && s.len() > 1 && !s[1..].starts_with(' ');
    if indicator && !dash_like {
        return false;
    }
    if s.starts_with(' ')
        || s.ends_with(' ')
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
    {
        return false;
    }
    if s.contains(['\n', '\t', '\r']) || s.chars().any(|c| c.is_control()) {
        return false;
    }
    true
}

fn string(s: &str) -> String {
    if resolves_to_non_string(s) || s.chars().any(|c| c.is_control()) {
        return serde_json::to_string(s).unwrap_or_default();
    }
    if plain_allowed(s) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubernetes_style() {
        let v = json!({
            "kind": "X",
            "spec": {"metadata": {}, "hosts": ["*", "a.b"], "ports": [{"name": "http", "number": 80}],
                     "port": "8080", "flag": "true", "empty": ""},
        });
        assert_eq!(
            to_yaml(&v),
            "kind: X\nspec:\n  empty: \"\"\n  flag: \"true\"\n  hosts:\n  - '*'\n  - a.b\n  metadata: {}\n  port: \"8080\"\n  ports:\n  - name: http\n    number: 80\n"
        );
    }
}
