//! The run's internal Docker network, and the routing checks that keep test traffic on
//! this machine: a node address must be on a directly attached network (no gateway).

use crate::backend::BackendError;
use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::Docker;

use super::engine::api_error;

/// Test networks are /24s inside this /16, one per run; 10.213 is not used by Docker's
/// default pools, and each candidate is checked against the host's routes first.
pub(super) const SUBNET_BASE: [u8; 2] = [10, 213];

/// The harness-side address of a node's network is .1 (the bridge), nodes are .11, .12, ...
pub(super) const FIRST_NODE_HOST: u8 = 11;

/// The host's IPv4 routes from /proc/net/route: (interface, destination, mask, gateway).
pub(super) fn routes() -> Vec<(String, u32, u32, u32)> {
    parse_routes(&std::fs::read_to_string("/proc/net/route").unwrap_or_default())
}

pub(super) fn parse_routes(text: &str) -> Vec<(String, u32, u32, u32)> {
    // The kernel prints each address as the native-endian u32 of its network-order
    // bytes: the native bytes of the parsed number are the address's bytes.
    let addr = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| u32::from_be_bytes(v.to_ne_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            Some((f[0].to_string(), addr(f[1])?, addr(f[7])?, addr(f[2])?))
        })
        .collect()
}

/// The most specific route to `addr`: (interface, prefix length, gateway).
pub(super) fn route_to(addr: Ipv4Addr) -> Option<(String, u32, Ipv4Addr)> {
    let a = u32::from(addr);
    routes()
        .into_iter()
        .filter(|(_, dest, mask, _)| a & mask == *dest)
        .max_by_key(|(_, _, mask, _)| mask.count_ones())
        .map(|(iface, _, mask, gw)| (iface, mask.count_ones(), Ipv4Addr::from(gw)))
}

/// Refuses to send test traffic to `addr` unless it is on a directly attached network
/// (no gateway) — and, when `iface` is given, that network is the one this run made. A
/// 10.x or 172.x address that is not is routed off the machine, which must never happen.
pub(super) fn ensure_on_link(addr: Ipv4Addr, iface: Option<&str>) -> Result<(), BackendError> {
    match route_to(addr) {
        Some((dev, len, gw)) if len > 0 && gw.is_unspecified() => match iface {
            Some(want) if dev != want => Err(format!(
                "node address {addr} is routed via {dev}, not this run's bridge {want}; refusing to send test traffic there"
            ).into()),
            _ => Ok(()),
        },
        other => Err(format!(
            "node address {addr} is not on a directly attached network (route: {other:?}); \
             refusing to send test traffic off the machine"
        ).into()),
    }
}

/// Creates the run's internal network on the first free /24 of 10.213.0.0/16; returns
/// its first three octets.
pub(super) async fn create_network(
    docker: &Docker,
    name: &str,
    bridge: &str,
    run_id: &str,
    labels: &HashMap<String, String>,
) -> Result<[u8; 3], BackendError> {
    let start = u32::from_str_radix(run_id, 16).unwrap_or(0) % 250;
    let mut last_err = String::new();
    for k in 0..250 {
        let third = ((start + k) % 250 + 1) as u8;
        let net = [SUBNET_BASE[0], SUBNET_BASE[1], third];
        let gateway = Ipv4Addr::new(net[0], net[1], net[2], 1);
        // Someone (another run, a VPN, ...) already routes this range: try the next.
        if route_to(gateway).is_some_and(|(_, len, _)| len > 0) {
            continue;
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: Some(true),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(format!("{}.{}.{}.0/24", net[0], net[1], net[2])),
                    gateway: Some(gateway.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            options: Some(
                [(
                    "com.docker.network.bridge.name".to_string(),
                    bridge.to_string(),
                )]
                .into(),
            ),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        match docker.create_network(req).await {
            Ok(_) => return Ok(net),
            // A concurrent run took the same range between our check and the create.
            Err(e) if e.to_string().contains("overlap") => last_err = e.to_string(),
            Err(e) => return Err(api_error("creating the test network", e)),
        }
    }
    Err(format!(
        "no free /24 left in {}.{}.0.0/16 for the test network ({last_err})",
        SUBNET_BASE[0], SUBNET_BASE[1]
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_route_of_its_own_is_refused() {
        // Only the default route covers it: traffic would leave the machine.
        if route_to(Ipv4Addr::new(10, 213, 250, 9)).is_some_and(|(_, len, _)| len > 0) {
            return; // a test network happens to exist; nothing to learn here
        }
        assert!(ensure_on_link(Ipv4Addr::new(10, 213, 250, 9), None).is_err());
    }

    #[test]
    fn proc_net_route_lines_parse_to_addresses() {
        let text =
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    fl-1\t0007D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let routes = parse_routes(text);
        let ip = |a, b, c, d| u32::from(Ipv4Addr::new(a, b, c, d));
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0], ("eth0".into(), 0, 0, ip(192, 0, 2, 1)));
        assert_eq!(
            routes[1],
            ("fl-1".into(), ip(10, 213, 7, 0), ip(255, 255, 255, 0), 0)
        );
    }
}
