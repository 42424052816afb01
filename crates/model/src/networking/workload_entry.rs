use crate::validate::{Context, Report, Validate};
use serde::{Deserialize, Serialize};

/// PLACEHOLDER: to be replaced with the full Istio field set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {}

impl Validate for WorkloadEntry {
    fn validate(&self, _ctx: &Context<'_>, _report: &mut Report) {}
}
