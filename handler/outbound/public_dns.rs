//! DNS for URLs that users paste in (channel webhooks): a name resolves only to public
//! addresses. A name with any private, loopback, link-local, CGNAT, unique-local or otherwise
//! special address is refused as a whole, so an allowed name pointed at an inside address (DNS
//! rebinding, a hostile record) never gets a connection. Tests swap the lookup
//! ([`PublicResolver::with_lookup`]) instead of touching real DNS.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

type Lookup = Arc<dyn Fn(&str) -> Option<Vec<IpAddr>> + Send + Sync>;

#[derive(Clone, Default)]
pub struct PublicResolver {
    /// Test seam: answers in place of the system resolver when it returns Some.
    lookup: Option<Lookup>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DnsRefusal(pub String);

pub fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240)
}

pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64: would reach an IPv4 of any kind
                || v6 == Ipv6Addr::UNSPECIFIED)
        }
    }
}

impl PublicResolver {
    pub fn with_lookup(
        lookup: impl Fn(&str) -> Option<Vec<IpAddr>> + Send + Sync + 'static,
    ) -> Self {
        PublicResolver {
            lookup: Some(Arc::new(lookup)),
        }
    }

    /// The addresses of `name`, all public, or why not.
    pub async fn resolve_public(&self, name: &str) -> Result<Vec<IpAddr>, DnsRefusal> {
        let ips: Vec<IpAddr> = match self.lookup.as_ref().and_then(|l| l(name)) {
            Some(ips) => ips,
            None => tokio::net::lookup_host((name, 0))
                .await
                .map_err(|e| DnsRefusal(format!("cannot resolve {name}: {e}")))?
                .map(|a| a.ip())
                .collect(),
        };
        if ips.is_empty() {
            return Err(DnsRefusal(format!("{name} has no address")));
        }
        if let Some(bad) = ips.iter().find(|ip| !is_public(**ip)) {
            return Err(DnsRefusal(format!(
                "{name} resolves to a non-public address ({bad}); refused"
            )));
        }
        Ok(ips)
    }
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let ips = this
                .resolve_public(name.as_str())
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "::",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["20.190.1.1", "52.1.2.3", "2603:1000::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_name_with_any_private_address_is_refused() {
        let r = PublicResolver::with_lookup(|name| match name {
            "rebind.example" => Some(vec![
                "52.1.2.3".parse().unwrap(),
                "10.0.0.5".parse().unwrap(),
            ]),
            "inside.example" => Some(vec!["169.254.169.254".parse().unwrap()]),
            "ok.example" => Some(vec!["52.1.2.3".parse().unwrap()]),
            _ => Some(vec![]),
        });
        assert!(r.resolve_public("rebind.example").await.is_err());
        assert!(r.resolve_public("inside.example").await.is_err());
        assert!(r.resolve_public("none.example").await.is_err());
        assert_eq!(r.resolve_public("ok.example").await.unwrap().len(), 1);
    }
}
