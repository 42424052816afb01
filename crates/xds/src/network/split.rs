//! Split-horizon EDS (Istio's `EndpointsByNetworkFilter`): what one proxy is sent for a list of
//! endpoints, given the networks' gateways.

use super::{NetworkGateway, NetworkView, Networks};
use crate::registry::{Endpoint, Locality, TlsMode};
use std::borrow::Cow;
use std::collections::BTreeMap;

impl Networks {
    /// `endpoints` as the proxy with `view` must see them:
    ///
    /// - endpoints on networks outside the proxy's requested network view are left out;
    /// - without any network gateway in the mesh, the rest is returned as is;
    /// - otherwise every weight is multiplied by the scale factor (the least common multiple of
    ///   the gateway counts per network, so that weights split evenly); endpoints on the proxy's
    ///   network (an empty network on either side counts as the same), or on a network without
    ///   gateways, stay; the others are replaced, per locality, by their network's gateways, each
    ///   getting an equal share of the endpoint's weight, summed over the endpoints it stands for,
    ///   and marked `tlsMode: istio` — and endpoints that do not speak Istio mTLS are dropped,
    ///   since a gateway only passes mTLS through. A proxy without a network reaches endpoints of
    ///   a network that has gateways through them.
    ///
    /// Kept endpoints come first, in their order; gateway endpoints follow, per locality, by
    /// address and port.
    pub(crate) fn split_horizon<'a>(
        &self,
        view: &NetworkView,
        endpoints: &'a [Endpoint],
    ) -> Cow<'a, [Endpoint]> {
        if self.gateways.is_empty() && view.visible.is_none() {
            return Cow::Borrowed(endpoints);
        }
        let visible = endpoints.iter().filter(|ep| view.sees(self.network_of(ep)));
        if self.gateways.is_empty() {
            return Cow::Owned(visible.cloned().collect());
        }
        let mut out: Vec<Endpoint> = Vec::new();
        // Gateway weights per locality; gateways order by address, then port.
        let mut via: BTreeMap<(&Locality, &NetworkGateway), u32> = BTreeMap::new();
        for ep in visible {
            let network = self.network_of(ep);
            let gateways = self.gateways_for(network);
            let weight = scaled(ep.weight, self.scale);
            let forced = view.network.is_empty() && !network.is_empty() && !gateways.is_empty();
            if !forced && (view.is_local(network) || gateways.is_empty()) {
                out.push(Endpoint {
                    weight,
                    ..ep.clone()
                });
                continue;
            }
            if ep.tls_mode != TlsMode::Istio {
                continue;
            }
            let share = weight / gateways.len() as u32;
            for gw in gateways {
                let w = via.entry((&ep.locality, gw)).or_default();
                *w = w.saturating_add(share);
            }
        }
        out.extend(via.into_iter().map(|((locality, gw), weight)| Endpoint {
            address: gw.address.clone(),
            port: gw.port,
            weight: weight.max(1),
            locality: locality.clone(),
            network: gw.network.clone(),
            service_account: String::new(),
            tls_mode: TlsMode::Istio,
            workload: String::new(),
            labels: Default::default(),
        }));
        Cow::Owned(out)
    }
}

/// Istio's `scaleEndpointLBWeight`: `weight × scale`, capped at `u32::MAX`.
pub(super) fn scaled(weight: u32, scale: u32) -> u32 {
    weight.max(1).saturating_mul(scale.max(1))
}
