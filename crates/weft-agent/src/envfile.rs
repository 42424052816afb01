//! Reading `KEY=value` environment files (`cluster.env`, `sidecar.env`) as a POSIX shell would
//! for the simple forms Istio writes: bare words, single quotes (with `'"'"'` escapes), double quotes.

use std::collections::BTreeMap;

/// Parses an env file. Comments, blank lines and `export ` prefixes are accepted.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected KEY=value, found {raw:?}", n + 1))?;
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(format!("line {}: invalid variable name {key:?}", n + 1));
        }
        out.insert(
            key.to_string(),
            unquote(value).map_err(|e| format!("line {}: {e}", n + 1))?,
        );
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(ch) => out.push(ch),
                    None => return Err("unterminated single quote".into()),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(ch) => out.push(ch),
                        None => return Err("unterminated double quote".into()),
                    },
                    Some(ch) => out.push(ch),
                    None => return Err("unterminated double quote".into()),
                }
            },
            '\\' => {
                if let Some(ch) = chars.next() {
                    out.push(ch);
                }
            }
            '#' if out.is_empty() => break,
            c if c.is_whitespace() => {
                // Unquoted whitespace ends the value (a trailing comment may follow).
                break;
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_quoting() {
        let m = parse(
            "CA_ADDR='istiod.istio-system.svc:15012'\nEMPTY=''\nQ='it'\"'\"'s'\n# c\nexport B=plain\nJ='{\"a\":\"b\"}'\n",
        )
        .unwrap();
        assert_eq!(m["CA_ADDR"], "istiod.istio-system.svc:15012");
        assert_eq!(m["EMPTY"], "");
        assert_eq!(m["Q"], "it's");
        assert_eq!(m["B"], "plain");
        assert_eq!(m["J"], "{\"a\":\"b\"}");
        assert!(parse("no equals").is_err());
    }
}
