//! One AuthorizationPolicy rule → one Envoy RBAC policy, as Istio builds it: each `from` is an
//! AND of its source fields (plus the `when` conditions about the source), the `from`s are ORed
//! as the policy's principals; each `to` likewise becomes a permission (plus the `when`
//! conditions about the destination). Values of one field are ORed, `not` values are a NOT of
//! their OR. On TCP filter chains HTTP-only fields are an error for ALLOW (the rule is skipped:
//! it must not grant more) and dropped for DENY/AUDIT (the rule matches more: it must not deny
//! less).

use super::matchers;
use weft_model::security::{Condition, Rule};
use weft_proto::envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, permission, principal,
};

/// Which RBAC engine the rule goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    Audit,
}

/// The attribute a value is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attr {
    // Permissions (destination side).
    DestIp,
    DestPort,
    ConnSni,
    Path,
    Method,
    Host,
    // Principals (source side).
    SrcIp,
    RemoteIp,
    SrcNamespace,
    SrcServiceAccount,
    SrcTrustDomain,
    SrcPrincipal,
    RequestPrincipal,
    RequestHeader,
}

impl Attr {
    fn is_permission(self) -> bool {
        matches!(
            self,
            Attr::DestIp | Attr::DestPort | Attr::ConnSni | Attr::Path | Attr::Method | Attr::Host
        )
    }

    fn http_only(self) -> bool {
        matches!(
            self,
            Attr::Path | Attr::Method | Attr::Host | Attr::RequestPrincipal | Attr::RequestHeader
        )
    }
}

/// One field with its values and not-values.
#[derive(Clone, Debug)]
struct Field {
    attr: Attr,
    /// The header name for `request.headers[...]`.
    header: String,
    values: Vec<String>,
    not_values: Vec<String>,
}

/// The rule's model: principals (one field list per `from`) and permissions (per `to`).
#[derive(Debug)]
pub struct Model {
    /// The policy's namespace (service accounts without a namespace are in it).
    namespace: String,
    principals: Vec<Vec<Field>>,
    permissions: Vec<Vec<Field>>,
}

fn field(attr: Attr, values: &[String], not_values: &[String]) -> Option<Field> {
    (!values.is_empty() || !not_values.is_empty()).then(|| Field {
        attr,
        header: String::new(),
        values: values.to_vec(),
        not_values: not_values.to_vec(),
    })
}

fn condition(c: &Condition) -> Result<Field, String> {
    let attr = match c.key.as_str() {
        "destination.ip" => Attr::DestIp,
        "destination.port" => Attr::DestPort,
        "connection.sni" => Attr::ConnSni,
        "source.ip" => Attr::SrcIp,
        "remote.ip" => Attr::RemoteIp,
        "source.namespace" => Attr::SrcNamespace,
        "source.serviceAccount" => Attr::SrcServiceAccount,
        "source.trustDomain" => Attr::SrcTrustDomain,
        "source.principal" => Attr::SrcPrincipal,
        "request.auth.principal" | "request.auth.audiences" | "request.auth.presenter" => {
            Attr::RequestPrincipal
        }
        k if k.starts_with("request.auth.claims[") => Attr::RequestPrincipal,
        k if k.starts_with("request.headers[") && k.ends_with(']') => Attr::RequestHeader,
        k => return Err(format!("unknown attribute {k}")),
    };
    let header = if attr == Attr::RequestHeader {
        c.key["request.headers[".len()..c.key.len() - 1].to_string()
    } else {
        String::new()
    };
    Ok(Field {
        attr,
        header,
        values: c.values.clone(),
        not_values: c.not_values.clone(),
    })
}

impl Model {
    pub fn new(namespace: &str, rule: &Rule) -> Result<Model, String> {
        let mut base_principal = Vec::new();
        let mut base_permission = Vec::new();
        for c in &rule.when {
            let f = condition(c)?;
            if f.attr.is_permission() {
                base_permission.push(f);
            } else {
                base_principal.push(f);
            }
        }
        let mut principals = Vec::new();
        for from in rule.from.iter().flatten() {
            let mut fields: Vec<Field> = Vec::new();
            if let Some(s) = &from.source {
                // Istio's order: principals, requestPrincipals, serviceAccounts, trustDomains,
                // namespaces, remoteIpBlocks, ipBlocks, then the conditions.
                fields.extend(
                    [
                        field(Attr::SrcPrincipal, &s.principals, &s.not_principals),
                        field(
                            Attr::RequestPrincipal,
                            &s.request_principals,
                            &s.not_request_principals,
                        ),
                        field(
                            Attr::SrcServiceAccount,
                            &s.service_accounts,
                            &s.not_service_accounts,
                        ),
                        field(Attr::SrcTrustDomain, &s.trust_domains, &s.not_trust_domains),
                        field(Attr::SrcNamespace, &s.namespaces, &s.not_namespaces),
                        field(Attr::RemoteIp, &s.remote_ip_blocks, &s.not_remote_ip_blocks),
                        field(Attr::SrcIp, &s.ip_blocks, &s.not_ip_blocks),
                    ]
                    .into_iter()
                    .flatten(),
                );
            }
            fields.extend(base_principal.iter().cloned());
            principals.push(fields);
        }
        if rule.from.as_ref().is_none_or(Vec::is_empty) {
            principals.push(base_principal);
        }
        let mut permissions = Vec::new();
        for to in rule.to.iter().flatten() {
            let mut fields: Vec<Field> = Vec::new();
            if let Some(o) = &to.operation {
                fields.extend(
                    [
                        field(Attr::Host, &o.hosts, &o.not_hosts),
                        field(Attr::Method, &o.methods, &o.not_methods),
                        field(Attr::Path, &o.paths, &o.not_paths),
                        field(Attr::DestPort, &o.ports, &o.not_ports),
                    ]
                    .into_iter()
                    .flatten(),
                );
            }
            fields.extend(base_permission.iter().cloned());
            permissions.push(fields);
        }
        if rule.to.as_ref().is_none_or(Vec::is_empty) {
            permissions.push(base_permission);
        }
        Ok(Model {
            namespace: namespace.to_string(),
            principals,
            permissions,
        })
    }

    /// The Envoy policy for a HTTP (`for_tcp = false`) or TCP filter chain.
    pub fn generate(&self, for_tcp: bool, action: Action) -> Result<Policy, String> {
        let mut permissions = Vec::new();
        for fields in &self.permissions {
            let mut and = Vec::new();
            for f in fields {
                and.extend(self.values(f, for_tcp, action, |v| permission_for(f, v))?);
            }
            if and.is_empty() {
                and.push(perm(permission::Rule::Any(true)));
            }
            permissions.push(perm(permission::Rule::AndRules(permission::Set {
                rules: and,
            })));
        }
        let mut principals = Vec::new();
        for fields in &self.principals {
            let mut and = Vec::new();
            for f in fields {
                and.extend(self.values(f, for_tcp, action, |v| self.principal_for(f, v))?);
            }
            if and.is_empty() {
                and.push(prin(principal::Identifier::Any(true)));
            }
            principals.push(prin(principal::Identifier::AndIds(principal::Set {
                ids: and,
            })));
        }
        Ok(Policy {
            permissions,
            principals,
            ..Default::default()
        })
    }

    /// One field's matchers: `[OR(values)]`, `[NOT(OR(not_values))]`, both, or none.
    fn values<T: Matchable>(
        &self,
        f: &Field,
        for_tcp: bool,
        action: Action,
        gen_one: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        if for_tcp && f.attr.http_only() {
            return if action == Action::Allow {
                Err(format!("{:?} is HTTP only", f.attr))
            } else {
                Ok(Vec::new())
            };
        }
        let mut out = Vec::new();
        for (list, negate) in [(&f.values, false), (&f.not_values, true)] {
            let mut or = Vec::new();
            for v in list {
                match gen_one(v) {
                    Ok(m) => or.push(m),
                    Err(e) if action == Action::Allow => return Err(e),
                    Err(_) => {}
                }
            }
            if or.is_empty() {
                continue;
            }
            let m = T::or(or);
            out.push(if negate { T::not(m) } else { m });
        }
        Ok(out)
    }

    fn principal_for(&self, f: &Field, v: &str) -> Result<Principal, String> {
        let authenticated = |m| {
            prin(principal::Identifier::Authenticated(
                principal::Authenticated {
                    principal_name: Some(m),
                },
            ))
        };
        Ok(match f.attr {
            Attr::SrcIp => prin(principal::Identifier::DirectRemoteIp(matchers::cidr(v)?)),
            Attr::RemoteIp => prin(principal::Identifier::RemoteIp(matchers::cidr(v)?)),
            Attr::SrcNamespace => {
                let ns: Vec<String> = v.split('*').map(matchers::quote_meta).collect();
                authenticated(matchers::regex(&format!(".*/ns/{}/.*", ns.join(".*"))))
            }
            Attr::SrcServiceAccount => {
                let (ns, sa) = v.split_once('/').unwrap_or((&self.namespace, v));
                authenticated(matchers::regex(&format!(
                    "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
                    matchers::quote_meta(ns),
                    matchers::quote_meta(sa)
                )))
            }
            Attr::SrcTrustDomain => authenticated(if v == "*" {
                matchers::prefix("spiffe://", false)
            } else if let Some((a, b)) = v.split_once('*') {
                matchers::regex(&format!(
                    "spiffe://{}[^/]*{}/.*",
                    matchers::quote_meta(a),
                    matchers::quote_meta(b)
                ))
            } else {
                matchers::prefix(&format!("spiffe://{v}/"), false)
            }),
            Attr::SrcPrincipal => authenticated(matchers::glob_with_prefix(v, "spiffe://")),
            Attr::RequestHeader => prin(principal::Identifier::Header(matchers::header(
                &f.header, v,
            ))),
            // Request principals come from JWT authentication, which Weft does not run: no
            // request carries one, so the value never matches (as in Istio without a
            // RequestAuthentication).
            Attr::RequestPrincipal => prin(principal::Identifier::NotId(Box::new(prin(
                principal::Identifier::Any(true),
            )))),
            a => return Err(format!("{a:?} is not a source attribute")),
        })
    }
}

fn permission_for(f: &Field, v: &str) -> Result<Permission, String> {
    Ok(match f.attr {
        Attr::DestIp => perm(permission::Rule::DestinationIp(matchers::cidr(v)?)),
        Attr::DestPort => perm(permission::Rule::DestinationPort(
            v.parse::<u16>()
                .map_err(|_| format!("invalid port {v:?}"))?
                .into(),
        )),
        Attr::ConnSni => perm(permission::Rule::RequestedServerName(matchers::glob(v))),
        Attr::Path => {
            if v.contains('{') {
                return Err(format!("path templates are not supported: {v:?}"));
            }
            perm(permission::Rule::UrlPath(matchers::path(v)))
        }
        Attr::Method => perm(permission::Rule::Header(matchers::header(":method", v))),
        Attr::Host => perm(permission::Rule::Header(matchers::host(v))),
        a => return Err(format!("{a:?} is not a destination attribute")),
    })
}

fn perm(rule: permission::Rule) -> Permission {
    Permission { rule: Some(rule) }
}

fn prin(id: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(id),
    }
}

/// OR and NOT for permissions and principals alike.
trait Matchable: Sized {
    fn or(list: Vec<Self>) -> Self;
    fn not(m: Self) -> Self;
}

impl Matchable for Permission {
    fn or(rules: Vec<Self>) -> Self {
        perm(permission::Rule::OrRules(permission::Set { rules }))
    }
    fn not(m: Self) -> Self {
        perm(permission::Rule::NotRule(Box::new(m)))
    }
}

impl Matchable for Principal {
    fn or(ids: Vec<Self>) -> Self {
        prin(principal::Identifier::OrIds(principal::Set { ids }))
    }
    fn not(m: Self) -> Self {
        prin(principal::Identifier::NotId(Box::new(m)))
    }
}
