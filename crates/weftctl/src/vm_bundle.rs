//! The files `weftctl x workload entry configure` writes for a VM, computed without any I/O:
//! `cluster.env`, `mesh.yaml` and `hosts`, byte for byte as `istioctl x workload entry configure`
//! writes them (istioctl/pkg/workload/workload.go; goldens under testdata/vmconfig/).
//! The token and the root certificate come from weftd and are not made here.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;
use weft_model::ObjectMeta;
use weft_model::networking::{WorkloadEntry, WorkloadGroup};
use weft_model::yaml_out::to_yaml;

/// Annotation holding ProxyConfig overrides (YAML), read from the group's own metadata and from
/// `spec.metadata`.
pub const PROXY_CONFIG_ANNOTATION: &str = "proxy.istio.io/config";
/// Port istiod serves xDS and the CA on over TLS (istioctl hard-codes it).
const ISTIOD_TLS_PORT: u16 = 15012;

/// A WorkloadGroup as `entry configure` uses it: the template is always there and its service
/// account defaults to `default`, as istioctl fills them in.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub namespace: String,
    /// `metadata.annotations` of the WorkloadGroup object itself.
    pub annotations: BTreeMap<String, String>,
    pub spec: WorkloadGroup,
}

impl Group {
    /// Reads a WorkloadGroup object (`apiVersion` and `kind` may be missing, as istioctl accepts).
    pub fn from_object(obj: &Value) -> Result<Group, String> {
        let Some(map) = obj.as_object() else {
            return Err("expected a WorkloadGroup object".into());
        };
        if let Some(kind) = map.get("kind").and_then(Value::as_str)
            && kind != "WorkloadGroup"
        {
            return Err(format!("expected a WorkloadGroup, found kind {kind:?}"));
        }
        let meta: ObjectMeta = match map.get("metadata") {
            Some(m) if !m.is_null() => serde_json::from_value(m.clone())
                .map_err(|e| format!("invalid WorkloadGroup metadata: {e}"))?,
            _ => ObjectMeta::default(),
        };
        let mut spec: WorkloadGroup = match map.get("spec") {
            Some(s) if !s.is_null() => serde_json::from_value(s.clone())
                .map_err(|e| format!("invalid WorkloadGroup spec: {e}"))?,
            _ => WorkloadGroup::default(),
        };
        let template = spec.template.get_or_insert_with(WorkloadEntry::default);
        if template.service_account.is_empty() {
            template.service_account = "default".into();
        }
        Ok(Group {
            name: meta.name,
            namespace: meta.namespace,
            annotations: meta.annotations,
            spec,
        })
    }

    pub fn template(&self) -> &WorkloadEntry {
        self.spec
            .template
            .as_ref()
            .expect("Group::from_object always sets the template")
    }

    pub fn service_account(&self) -> &str {
        &self.template().service_account
    }
}

/// The parts of Istio's MeshConfig that `entry configure` reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeshConfig {
    /// `defaultConfig` (ProxyConfig) in protobuf JSON form, field names in lowerCamelCase.
    pub default_config: Map<String, Value>,
    pub trust_domain: String,
}

impl MeshConfig {
    /// Parses MeshConfig YAML or JSON (what istiod's `istio` ConfigMap holds under `mesh`).
    pub fn parse(text: &str) -> Result<MeshConfig, String> {
        let Some(doc) = parse_yaml_object(text)? else {
            return Ok(MeshConfig::default());
        };
        let mut mesh = MeshConfig::default();
        for (key, value) in doc {
            match lower_camel(&key).as_str() {
                // Protobuf JSON replaces a message field with what was written (`null` leaves it).
                "defaultConfig" => match value {
                    Value::Object(pc) => mesh.default_config = proxy_config_fields(pc)?,
                    Value::Null => {}
                    _ => return Err("defaultConfig: expected a mapping".into()),
                },
                "trustDomain" => match value {
                    Value::String(s) => mesh.trust_domain = s,
                    Value::Null => {}
                    _ => return Err("trustDomain: expected a string".into()),
                },
                _ => {}
            }
        }
        Ok(mesh)
    }
}

/// Command-line settings that shape the bundle.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespace istiod runs in (`istio-system`).
    pub istio_namespace: String,
    /// Control-plane revision (`""` and `default` mean none).
    pub revision: String,
    pub cluster_id: String,
    pub internal_ip: String,
    pub external_ip: String,
    /// Where the VM reaches istiod (the east-west gateway); `hosts` stays empty without it.
    pub ingress_ip: String,
    pub autoregister: bool,
    pub capture_dns: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            istio_namespace: "istio-system".into(),
            revision: String::new(),
            cluster_id: "Kubernetes".into(),
            internal_ip: String::new(),
            external_ip: String::new(),
            ingress_ip: String::new(),
            autoregister: false,
            capture_dns: true,
        }
    }
}

/// The generated text files.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    pub cluster_env: String,
    pub mesh_yaml: String,
    /// Empty when no usable ingress IP was given (istioctl writes the empty file too).
    pub hosts: String,
    /// istioctl's line (on standard output) when template labels override the group's labels.
    pub labels_notice: Option<String>,
}

fn is_revisioned(revision: &str) -> bool {
    !revision.is_empty() && revision != "default"
}

/// `istiod[-REV].NS.svc`.
pub fn istiod_host(istio_namespace: &str, revision: &str) -> String {
    if is_revisioned(revision) {
        format!("istiod-{revision}.{istio_namespace}.svc")
    } else {
        format!("istiod.{istio_namespace}.svc")
    }
}

/// `istiod[-REV].NS.svc:15012`.
pub fn istiod_addr(istio_namespace: &str, revision: &str) -> String {
    format!(
        "{}:{ISTIOD_TLS_PORT}",
        istiod_host(istio_namespace, revision)
    )
}

/// Go's `net.ParseIP` accepts it (IPv4 or IPv6, no zone).
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// Generates `cluster.env`, `mesh.yaml` and `hosts` for `group`.
pub fn generate(group: &Group, mesh: &MeshConfig, opts: &Options) -> Result<Bundle, String> {
    let (proxy_config, labels_notice) = proxy_config(group, mesh, opts)?;
    let cluster_env = cluster_env(group, &proxy_config, opts);
    let mut root = Map::new();
    root.insert("defaultConfig".into(), Value::Object(proxy_config));
    let mesh_yaml = go_yaml(&Value::Object(root));
    let hosts = if is_ip(&opts.ingress_ip) {
        format!(
            "{} {}\n",
            opts.ingress_ip,
            istiod_host(&opts.istio_namespace, &opts.revision)
        )
    } else {
        String::new()
    };
    Ok(Bundle {
        cluster_env,
        mesh_yaml,
        hosts,
        labels_notice,
    })
}

/// The ProxyConfig written to `mesh.yaml`: the mesh's `defaultConfig`, the discovery address of a
/// revision, `proxy.istio.io/config` annotations, the group's probe, and Istio's metadata keys.
fn proxy_config(
    group: &Group,
    mesh: &MeshConfig,
    opts: &Options,
) -> Result<(Map<String, Value>, Option<String>), String> {
    let mut pc = mesh.default_config.clone();
    if is_revisioned(&opts.revision) && pc.get("discoveryAddress").is_none() {
        pc.insert(
            "discoveryAddress".into(),
            Value::String(istiod_addr(&opts.istio_namespace, &opts.revision)),
        );
    }
    let mut metadata = string_map(pc.remove("proxyMetadata"));
    // Each annotation replaces the fields it names, except proxyMetadata, which is merged
    // key by key into what the mesh config gave (as istioctl does).
    for annotations in [&group.annotations, &group.spec.metadata.annotations] {
        let Some(text) = annotations.get(PROXY_CONFIG_ANNOTATION) else {
            continue;
        };
        let overlay = parse_yaml_object(text)
            .and_then(|o| proxy_config_fields(o.unwrap_or_default()))
            .map_err(|e| format!("invalid {PROXY_CONFIG_ANNOTATION} annotation: {e}"))?;
        for (key, value) in overlay {
            if key == "proxyMetadata" {
                metadata.extend(string_map(Some(value)));
            } else {
                pc.insert(key, value);
            }
        }
    }

    let template = group.template();
    let mut labels = group.spec.metadata.labels.clone();
    let mut labels_notice = None;
    if !template.labels.is_empty() {
        let shown: Vec<String> = template
            .labels
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        labels_notice = Some(format!(
            "Labels should be set in the metadata. The following WorkloadEntry labels will override metadata labels: map[{}]",
            shown.join(" ")
        ));
        labels.extend(template.labels.clone());
    }

    // readinessProbe is always the group's (none when the group has none).
    pc.remove("readinessProbe");
    if let Some(probe) = &group.spec.probe {
        let probe = serde_json::to_value(probe).map_err(|e| format!("probe: {e}"))?;
        pc.insert("readinessProbe".into(), probe);
    }

    let (service, revision) = canonical_service(&labels, &group.name);
    let mesh_id = pc
        .get("meshId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut set = |k: &str, v: &str| {
        metadata.insert(k.to_string(), v.to_string());
    };
    set("CANONICAL_SERVICE", &service);
    set("CANONICAL_REVISION", &revision);
    set("POD_NAMESPACE", &group.namespace);
    set("SERVICE_ACCOUNT", &template.service_account);
    set("TRUST_DOMAIN", &mesh.trust_domain);
    set("ISTIO_META_CLUSTER_ID", &opts.cluster_id);
    set("ISTIO_META_MESH_ID", &mesh_id);
    set("ISTIO_META_NETWORK", &template.network);
    if !template.ports.is_empty() {
        set("ISTIO_META_POD_PORTS", &pod_ports_json(&template.ports));
    }
    set("ISTIO_META_WORKLOAD_NAME", &group.name);
    labels.insert("service.istio.io/canonical-name".into(), service);
    labels.insert("service.istio.io/canonical-revision".into(), revision);
    set("ISTIO_METAJSON_LABELS", &labels_json(&labels));
    if opts.capture_dns {
        set("ISTIO_META_DNS_CAPTURE", "true");
    }
    if opts.autoregister {
        set("ISTIO_META_AUTO_REGISTER_GROUP", &group.name);
    }
    let metadata = metadata
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    pc.insert("proxyMetadata".into(), Value::Object(metadata));
    Ok((pc, labels_notice))
}

/// `cluster.env`: the ProxyConfig's metadata, then the VM's own settings, one sorted
/// `KEY=<shell-quoted value>` line each.
fn cluster_env(group: &Group, pc: &Map<String, Value>, opts: &Options) -> String {
    let template = group.template();
    let mut env: BTreeMap<String, String> = string_map(pc.get("proxyMetadata").cloned());
    // istioctl joins the port numbers in Go map order (random); Weft uses port-name order.
    let inbound = if template.ports.is_empty() {
        "*".to_string()
    } else {
        let ports: Vec<String> = template.ports.values().map(u32::to_string).collect();
        ports.join(",")
    };
    // 22: ssh; 15090: Envoy's Prometheus; 15021, 15020: the agent.
    let mut exclude = "22,15090,15021".to_string();
    let status_port = pc.get("statusPort").and_then(as_i64).unwrap_or(0);
    if status_port != 15090 && status_port != 15021 {
        if status_port != 0 {
            let _ = write!(exclude, ",{status_port}");
        } else {
            exclude.push_str(",15020");
        }
    }
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("ISTIO_INBOUND_PORTS", inbound);
    set("ISTIO_NAMESPACE", group.namespace.clone());
    set(
        "ISTIO_SERVICE",
        format!("{}.{}", group.name, group.namespace),
    );
    set("ISTIO_SERVICE_CIDR", "*".into());
    set("ISTIO_LOCAL_EXCLUDE_PORTS", exclude);
    set("SERVICE_ACCOUNT", template.service_account.clone());
    if is_revisioned(&opts.revision) {
        set(
            "CA_ADDR",
            istiod_addr(&opts.istio_namespace, &opts.revision),
        );
    }
    if !opts.internal_ip.is_empty() {
        set("ISTIO_SVC_IP", opts.internal_ip.clone());
    } else if !opts.external_ip.is_empty() {
        set("ISTIO_SVC_IP", opts.external_ip.clone());
        set("REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION", "true".into());
    }
    // Sorted as whole lines (`KEY=value`), as istioctl sorts them.
    let mut lines: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{k}={}", shell_quote(v)))
        .collect();
    lines.sort();
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Values of a string map field, scalars written as text (a YAML `true` is `"true"`).
fn string_map(v: Option<Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(m)) = v else {
        return BTreeMap::new();
    };
    m.into_iter()
        .filter_map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                Value::Null => return None,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => other.to_string(),
            };
            Some((k, s))
        })
        .collect()
}

/// Istio's canonical service name and revision from workload labels.
pub fn canonical_service(labels: &BTreeMap<String, String>, workload: &str) -> (String, String) {
    let first = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k).cloned());
    let name = first(&[
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .unwrap_or_else(|| workload.to_string());
    let revision = first(&[
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .unwrap_or_else(|| "latest".to_string());
    (name, revision)
}

/// `ISTIO_META_POD_PORTS`: Kubernetes container ports as JSON, sorted by name.
pub fn pod_ports_json(ports: &BTreeMap<String, u32>) -> String {
    let items: Vec<String> = ports
        .iter()
        .map(|(name, port)| {
            let mut item = String::from("{");
            if !name.is_empty() {
                item.push_str("\"name\":");
                go_json_string(&mut item, name);
                item.push(',');
            }
            let _ = write!(item, "\"containerPort\":{port},\"protocol\":\"\"}}");
            item
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// `ISTIO_METAJSON_LABELS`: the labels as a Go `json.Marshal` of a map (sorted keys).
fn labels_json(labels: &BTreeMap<String, String>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        go_json_string(&mut out, k);
        out.push(':');
        go_json_string(&mut out, v);
    }
    out.push('}');
    out
}

/// A JSON string as Go's `encoding/json` writes it (HTML-safe: `<`, `>`, `&` escaped).
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Istio's `shellescape.Quote`: `''` for empty; the value itself when every character is one of
/// `\ w @ % + = : , . / -` (the regexp class `[^\\w@%+=:,./-]` names a literal backslash and the
/// letter `w`, not the `\w` word class); otherwise single-quoted, `'` written as `'"'"'`.
pub fn shell_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let safe = |c: char| "\\w@%+=:,./-".contains(c);
    if s.chars().all(safe) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// Parses YAML (or JSON) that must be a mapping; `None` for an empty document.
fn parse_yaml_object(text: &str) -> Result<Option<Map<String, Value>>, String> {
    if text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    }) {
        return Ok(None);
    }
    let v: Value = serde_saphyr::from_str(text).map_err(|e| {
        let msg = e.to_string();
        format!("invalid YAML: {}", msg.lines().next().unwrap_or_default())
    })?;
    match v {
        Value::Object(m) => Ok(Some(m)),
        Value::Null => Ok(None),
        _ => Err("expected a mapping".into()),
    }
}

/// ProxyConfig fields as protobuf JSON would print them: lowerCamelCase names (the proto names
/// are accepted too), unset (`null`) and empty-string fields left out.
fn proxy_config_fields(fields: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (key, value) in fields {
        match &value {
            Value::Null => continue,
            Value::String(s) if s.is_empty() => continue,
            _ => {}
        }
        let key = lower_camel(&key);
        if key == "proxyMetadata" && !matches!(value, Value::Object(_)) {
            return Err("proxyMetadata: expected a mapping".into());
        }
        out.insert(key, value);
    }
    Ok(out)
}

/// `discovery_address` -> `discoveryAddress` (protobuf's JSON name).
fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// YAML as sigs.k8s.io/yaml (go-yaml v2.4) prints it. Scalars are styled by weft_model's yaml_out;
// what differs from yaml_out is go-yaml's key order and its folding of long lines at 80 columns.

/// go-yaml v2's line width.
const BEST_WIDTH: usize = 80;

/// go-yaml v2's map key order (`keyList.Less` for string keys): at the first differing
/// character, two letters compare by code point, a non-letter sorts before a letter, and runs of
/// digits compare by numeric value; a prefix sorts first. So `ISTIO_META_X` < `ISTIO_METAJSON`.
/// Sorted by insertion, as Go's `sort.Sort` does short lists: the order is not transitive for some
/// digit-led keys (`099` < `0b` < `9` < `099`), where a library sort may panic.
fn sort_keys(keys: &mut [&String]) {
    for i in 1..keys.len() {
        let mut j = i;
        while j > 0 && go_yaml_key_less(keys[j], keys[j - 1]) {
            keys.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn go_yaml_key_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let digit = |c: char| c.is_ascii_digit();
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return bl;
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && digit(ar[j - 1]) {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && digit(ar[ai]) {
            an = an.wrapping_mul(10).wrapping_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && digit(br[bi]) {
            bn = bn.wrapping_mul(10).wrapping_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

/// Renders a JSON value as sigs.k8s.io/yaml's `Marshal` does.
pub fn go_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            write_scalar(&mut out, other, 0, 0);
            out.push('\n');
        }
    }
    out
}

/// Writes a block mapping whose keys start at column `indent` (the first key's indentation is
/// already written when `out` does not end a line).
fn write_map(out: &mut String, m: &Map<String, Value>, indent: usize) {
    let mut keys: Vec<&String> = m.keys().collect();
    sort_keys(&mut keys);
    for k in keys {
        if out.is_empty() || out.ends_with('\n') {
            out.push_str(&" ".repeat(indent));
        }
        let key = scalar_text(&Value::String(k.clone()));
        out.push_str(&key);
        out.push(':');
        let column = indent + key.chars().count() + 1;
        match &m[k] {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                write_map(out, inner, indent + 2);
            }
            // Sequences in a mapping are not indented (go-yaml's "indentless" sequences).
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                write_seq(out, a, indent);
            }
            other => {
                out.push(' ');
                write_scalar(out, other, column + 1, indent + 2);
                out.push('\n');
            }
        }
    }
}

/// Writes a block sequence whose dashes are at column `indent` (the first dash's indentation is
/// already written when `out` does not end a line: a sequence in a sequence starts `- - `).
fn write_seq(out: &mut String, a: &[Value], indent: usize) {
    for v in a {
        if out.is_empty() || out.ends_with('\n') {
            out.push_str(&" ".repeat(indent));
        }
        out.push('-');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push(' ');
                write_map(out, m, indent + 2);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push(' ');
                write_seq(out, inner, indent + 2);
            }
            other => {
                out.push(' ');
                write_scalar(out, other, indent + 2, indent + 2);
                out.push('\n');
            }
        }
    }
}

/// A scalar as yaml_out styles it (plain, single- or double-quoted, `{}`, `[]`).
fn scalar_text(v: &Value) -> String {
    let mut s = to_yaml(v);
    if s.ends_with('\n') {
        s.pop();
    }
    s
}

/// Writes a scalar starting at `column`; long plain and single-quoted strings are folded at
/// spaces past column 80, continuing at `indent`, as go-yaml's emitter does.
fn write_scalar(out: &mut String, v: &Value, column: usize, indent: usize) {
    let text = scalar_text(v);
    let Value::String(raw) = v else {
        out.push_str(&text);
        return;
    };
    let single = text.starts_with('\'');
    if text.starts_with('"') || !raw.contains(' ') {
        out.push_str(&text);
        return;
    }
    let chars: Vec<char> = raw.chars().collect();
    let mut column = column;
    if single {
        out.push('\'');
        column += 1;
    }
    let mut spaces = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let next_is_space = chars.get(i + 1) == Some(&' ');
            let inside = !single || (i > 0 && i + 1 < chars.len());
            if !spaces && column > BEST_WIDTH && inside && !next_is_space {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                column = indent;
            } else {
                out.push(' ');
                column += 1;
            }
            spaces = true;
        } else {
            if single && c == '\'' {
                out.push('\'');
                column += 1;
            }
            out.push(c);
            column += 1;
            spaces = false;
        }
    }
    if single {
        out.push('\'');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group(yaml: &str) -> Group {
        let v: Value = serde_saphyr::from_str(yaml).unwrap();
        Group::from_object(&v).unwrap()
    }

    const ISTIO_GROUP: &str = "kind: WorkloadGroup\nmetadata:\n  name: foo\n  namespace: bar\nspec:\n  metadata:\n    annotations:\n      proxy.istio.io/config: |-\n        proxyMetadata:\n          # this should override the value from the global meshconfig\n          PROXY_CONFIG_ANNOT_VALUE: bar\n    labels: {}\n  template:\n    ports: {}\n    serviceAccount: vm-serviceaccount\n  probe:\n    httpGet:\n      port: 8080\n";

    const ISTIO_MESH: &str = "defaultConfig:\n  proxyMetadata:\n    # should be overridden by the command\n    ISTIO_META_DNS_CAPTURE: \"false\"\n    # should be overridden by the annotation on the WorkloadGroup\n    PROXY_CONFIG_ANNOT_VALUE: \"foo\"\n    # should be in the final cluster.env/mesh.yaml\n    CLUSTER_MESH_CONFIG_VALUE: \"foo\"\n";

    fn istio_options() -> Options {
        Options {
            revision: "rev-1".into(),
            internal_ip: "10.10.10.10".into(),
            ingress_ip: "10.10.10.11".into(),
            ..Options::default()
        }
    }

    #[test]
    fn istio_ipv4_golden_without_a_server() {
        let b = generate(
            &group(ISTIO_GROUP),
            &MeshConfig::parse(ISTIO_MESH).unwrap(),
            &istio_options(),
        )
        .unwrap();
        assert_eq!(
            b.cluster_env,
            include_str!("../testdata/vmconfig/ipv4/cluster.env.golden")
        );
        assert_eq!(
            b.mesh_yaml,
            include_str!("../testdata/vmconfig/ipv4/mesh.yaml.golden")
        );
        assert_eq!(b.hosts, "10.10.10.11 istiod-rev-1.istio-system.svc\n");
        assert_eq!(b.labels_notice, None);
    }

    #[test]
    fn empty_mesh_config_and_no_revision() {
        let mesh = MeshConfig::parse("defaultConfig: {}").unwrap();
        let opts = Options {
            internal_ip: "10.10.10.10".into(),
            ..Options::default()
        };
        let g = group(include_str!(
            "../testdata/vmconfig/nil-proxy-metadata/workloadgroup.yaml"
        ));
        let b = generate(&g, &mesh, &opts).unwrap();
        assert_eq!(
            b.cluster_env,
            include_str!("../testdata/vmconfig/nil-proxy-metadata/cluster.env.golden")
        );
        assert_eq!(
            b.mesh_yaml,
            include_str!("../testdata/vmconfig/nil-proxy-metadata/mesh.yaml.golden")
        );
        assert_eq!(b.hosts, "");
        // No mesh config at all is the same as an empty one.
        assert_eq!(generate(&g, &MeshConfig::default(), &opts).unwrap(), b);
    }

    #[test]
    fn shell_quoting_follows_istio() {
        assert_eq!(shell_quote(""), "''");
        // Only `\ w @ % + = : , . / -` stay bare: the class is not `\w`.
        assert_eq!(shell_quote("w@%+=:,./-\\"), "w@%+=:,./-\\");
        assert_eq!(shell_quote("www"), "www");
        assert_eq!(shell_quote("foo"), "'foo'");
        assert_eq!(shell_quote("8080"), "'8080'");
        assert_eq!(shell_quote("a_b"), "'a_b'");
        assert_eq!(shell_quote("*"), "'*'");
        assert_eq!(shell_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(
            shell_quote("{\"key\": \"value\"}"),
            "'{\"key\": \"value\"}'"
        );
        assert_eq!(shell_quote("no issues here"), "'no issues here'");
        assert_eq!(shell_quote("é"), "'é'");
    }

    #[test]
    fn pod_ports_sorted_by_name() {
        let ports = BTreeMap::from([("HTTPS".to_string(), 443), ("HTTP".to_string(), 80)]);
        assert_eq!(
            pod_ports_json(&ports),
            r#"[{"name":"HTTP","containerPort":80,"protocol":""},{"name":"HTTPS","containerPort":443,"protocol":""}]"#
        );
    }

    #[test]
    fn go_json_escapes_html() {
        let mut s = String::new();
        go_json_string(&mut s, "a<b>&\"\\\n\u{1}");
        assert_eq!(s, r#""a\u003cb\u003e\u0026\"\\\n\u0001""#);
    }

    #[test]
    fn canonical_service_precedence() {
        let l = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            canonical_service(&l(&[]), "wg"),
            ("wg".into(), "latest".into())
        );
        assert_eq!(
            canonical_service(
                &l(&[
                    ("app", "a"),
                    ("app.kubernetes.io/name", "n"),
                    ("version", "v1")
                ]),
                "wg"
            ),
            ("n".into(), "v1".into())
        );
        assert_eq!(
            canonical_service(
                &l(&[
                    ("service.istio.io/canonical-name", "c"),
                    ("app", "a"),
                    ("app.kubernetes.io/version", "v2"),
                    ("version", "v1")
                ]),
                "wg"
            ),
            ("c".into(), "v2".into())
        );
    }

    #[test]
    fn exclude_ports_follow_status_port() {
        let g = group(
            "metadata: {name: a, namespace: b}\nspec: {template: {ports: {http: 8080, grpc: 9090}}}",
        );
        let line = |mesh: &str| {
            let b = generate(&g, &MeshConfig::parse(mesh).unwrap(), &Options::default()).unwrap();
            let env = b.cluster_env;
            let get = |k: &str| {
                env.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}=")))
                    .unwrap_or_default()
                    .to_string()
            };
            (get("ISTIO_LOCAL_EXCLUDE_PORTS"), get("ISTIO_INBOUND_PORTS"))
        };
        assert_eq!(
            line(""),
            ("'22,15090,15021,15020'".into(), "'9090,8080'".into())
        );
        assert_eq!(
            line("defaultConfig: {statusPort: 15090}").0,
            "'22,15090,15021'"
        );
        assert_eq!(
            line("defaultConfig: {statusPort: 15021}").0,
            "'22,15090,15021'"
        );
        assert_eq!(
            line("defaultConfig: {statusPort: 15999}").0,
            "'22,15090,15021,15999'"
        );
        // Proto field names are accepted.
        assert_eq!(
            line("defaultConfig: {status_port: 15999}").0,
            "'22,15090,15021,15999'"
        );
    }

    #[test]
    fn external_ip_rewrites_probes_and_no_revision_means_no_ca_addr() {
        let g = group("metadata: {name: a, namespace: b}\nspec: {template: {serviceAccount: sa}}");
        let opts = Options {
            external_ip: "203.0.113.9".into(),
            ..Options::default()
        };
        let b = generate(&g, &MeshConfig::default(), &opts).unwrap();
        assert!(b.cluster_env.contains("ISTIO_SVC_IP='203.0.113.9'\n"));
        assert!(
            b.cluster_env
                .contains("REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION='true'\n")
        );
        assert!(!b.cluster_env.contains("CA_ADDR"));
        assert!(!b.mesh_yaml.contains("discoveryAddress"));
        // `default` is no revision either.
        let opts = Options {
            revision: "default".into(),
            ..opts
        };
        let b = generate(&g, &MeshConfig::default(), &opts).unwrap();
        assert!(!b.cluster_env.contains("CA_ADDR"));
    }

    #[test]
    fn flags_metadata_labels_and_annotations() {
        let g = group(
            "metadata:\n  name: forum\n  namespace: forum-services\n  annotations:\n    proxy.istio.io/config: '{meshId: m1, proxyMetadata: {A: object}}'\nspec:\n  metadata:\n    labels: {app: forum, version: v3}\n    annotations:\n      proxy.istio.io/config: 'proxyMetadata: {A: spec, B: \"<x>\"}'\n  template:\n    serviceAccount: forum-sa\n    network: vm-network\n    labels: {version: v4}\n    ports: {http: 8080}\n",
        );
        let opts = Options {
            autoregister: true,
            capture_dns: false,
            cluster_id: "c1".into(),
            ..Options::default()
        };
        let mesh = MeshConfig::parse("trustDomain: example.org\ndefaultConfig:\n  discoveryAddress: weftd:15012\n  readinessProbe: {tcpSocket: {port: 1}}\n  proxyMetadata: {ISTIO_META_DNS_CAPTURE: \"true\"}\n").unwrap();
        let b = generate(&g, &mesh, &opts).unwrap();
        assert_eq!(
            b.labels_notice.as_deref(),
            Some(
                "Labels should be set in the metadata. The following WorkloadEntry labels will override metadata labels: map[version:v4]"
            )
        );
        assert_eq!(
            b.mesh_yaml,
            "defaultConfig:\n  discoveryAddress: weftd:15012\n  meshId: m1\n  proxyMetadata:\n    A: spec\n    B: <x>\n    CANONICAL_REVISION: v4\n    CANONICAL_SERVICE: forum\n    ISTIO_META_AUTO_REGISTER_GROUP: forum\n    ISTIO_META_CLUSTER_ID: c1\n    ISTIO_META_DNS_CAPTURE: \"true\"\n    ISTIO_META_MESH_ID: m1\n    ISTIO_META_NETWORK: vm-network\n    ISTIO_META_POD_PORTS: '[{\"name\":\"http\",\"containerPort\":8080,\"protocol\":\"\"}]'\n    ISTIO_META_WORKLOAD_NAME: forum\n    ISTIO_METAJSON_LABELS: '{\"app\":\"forum\",\"service.istio.io/canonical-name\":\"forum\",\"service.istio.io/canonical-revision\":\"v4\",\"version\":\"v4\"}'\n    POD_NAMESPACE: forum-services\n    SERVICE_ACCOUNT: forum-sa\n    TRUST_DOMAIN: example.org\n"
        );
        assert!(b.cluster_env.contains("ISTIO_INBOUND_PORTS='8080'\n"));
        assert!(b.cluster_env.contains("B='<x>'\n"));
    }

    #[test]
    fn bad_annotation_is_an_error() {
        let g = group(
            "metadata: {name: a, namespace: b}\nspec:\n  metadata:\n    annotations:\n      proxy.istio.io/config: '[1, 2]'\n",
        );
        let e = generate(&g, &MeshConfig::default(), &Options::default()).unwrap_err();
        assert!(
            e.starts_with("invalid proxy.istio.io/config annotation"),
            "{e}"
        );
    }

    #[test]
    fn go_yaml_key_order() {
        let keys = [
            "ISTIO_METAJSON_LABELS",
            "ISTIO_META_WORKLOAD_NAME",
            "a10",
            "a9",
            "a",
            "B",
            "a_",
            "ab",
        ];
        let owned: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let mut refs: Vec<&String> = owned.iter().collect();
        sort_keys(&mut refs);
        assert_eq!(
            refs,
            [
                "B",
                "ISTIO_META_WORKLOAD_NAME",
                "ISTIO_METAJSON_LABELS",
                "a",
                "a_",
                "a9",
                "a10",
                "ab"
            ]
        );
    }

    #[test]
    fn non_transitive_keys_do_not_panic() {
        let v = json!({"099": 1, "0bA": 2, "9": 3, "z": 4});
        assert_eq!(go_yaml(&v).lines().count(), 4);
    }

    #[test]
    fn go_yaml_folds_long_lines_at_spaces() {
        let long = "word ".repeat(30);
        let long = long.trim_end();
        let v = json!({"k": {"cmd": long, "q": format!("{long}: x")}, "seq": [long]});
        let out = go_yaml(&v);
        for line in out.lines() {
            assert!(line.chars().count() <= 90, "{line:?}");
        }
        // Folded lines read back as the same strings.
        let back: Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(back, v);
    }
}
