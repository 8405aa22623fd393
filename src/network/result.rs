//! Reading pod IPs out of a CNI result (spec 0.3.0 to 1.x, and 0.1/0.2's ip4/ip6).

use std::net::IpAddr;

use serde_json::Value;

/// The pod's addresses on the interface inside its namespace, in the result's order.
pub fn pod_ips(result: &Value, ifname: &str) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    if let Some(list) = result.get("ips").and_then(Value::as_array) {
        let interfaces = result.get("interfaces").and_then(Value::as_array);
        for ip in list {
            // An address on a host-side interface (the bridge) is not the pod's.
            if let (Some(index), Some(interfaces)) =
                (ip.get("interface").and_then(Value::as_u64), interfaces)
                && let Some(iface) = interfaces.get(index as usize)
            {
                let name = iface.get("name").and_then(Value::as_str).unwrap_or("");
                let sandbox = iface.get("sandbox").and_then(Value::as_str).unwrap_or("");
                if sandbox.is_empty() || name != ifname {
                    continue;
                }
            }
            if let Some(addr) = ip
                .get("address")
                .and_then(Value::as_str)
                .and_then(parse_cidr)
            {
                ips.push(addr);
            }
        }
    } else {
        for key in ["ip4", "ip6"] {
            if let Some(addr) = result
                .get(key)
                .and_then(|v| v.get("ip"))
                .and_then(Value::as_str)
                .and_then(parse_cidr)
            {
                ips.push(addr);
            }
        }
    }
    ips
}

fn parse_cidr(cidr: &str) -> Option<IpAddr> {
    cidr.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_on_the_pod_interface_are_taken_in_order() {
        let result: Value = serde_json::from_str(
            r#"{"cniVersion":"1.0.0",
                "interfaces":[{"name":"cni0","mac":"aa"},{"name":"veth1","mac":"bb"},
                              {"name":"eth0","mac":"cc","sandbox":"/run/x/net"}],
                "ips":[{"address":"10.22.0.1/24","interface":0},
                       {"address":"10.22.0.5/24","gateway":"10.22.0.1","interface":2},
                       {"address":"fd00::5/64","interface":2}]}"#,
        )
        .unwrap();
        let ips = pod_ips(&result, "eth0");
        assert_eq!(
            ips,
            vec![
                "10.22.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn old_results_and_missing_interfaces_still_give_ips() {
        let old: Value =
            serde_json::from_str(r#"{"ip4":{"ip":"10.1.0.2/16"},"ip6":{"ip":"fd::2/64"}}"#)
                .unwrap();
        assert_eq!(pod_ips(&old, "eth0").len(), 2);
        let bare: Value = serde_json::from_str(r#"{"ips":[{"address":"10.9.0.3/24"}]}"#).unwrap();
        assert_eq!(
            pod_ips(&bare, "eth0"),
            vec!["10.9.0.3".parse::<IpAddr>().unwrap()]
        );
        assert!(pod_ips(&serde_json::json!({}), "eth0").is_empty());
    }
}
