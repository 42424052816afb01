use crate::validate::{Context, Report, Validate};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

impl Validate for NamespaceSpec {
    fn validate(&self, _ctx: &Context<'_>, _report: &mut Report) {}
}
