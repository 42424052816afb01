use crate::validate::{Context, Report, Validate};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of a ServiceAccount (it has no `spec`; these are top-level fields).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountFields {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
}

impl Validate for ServiceAccountFields {
    fn validate(&self, _ctx: &Context<'_>, _report: &mut Report) {}
}
