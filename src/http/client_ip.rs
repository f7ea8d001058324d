//! The address a request came from, as limits and logs should see it: the
//! TCP peer, unless the peer is one of `server.trusted_proxies`; then the
//! right-most X-Forwarded-For address that is not a trusted proxy itself.
//! Each proxy appends the address it was called from, so everything left of
//! the first untrusted one was written by the client and proves nothing.

use std::net::{IpAddr, SocketAddr};

use actix_web::HttpRequest;

use crate::config::{IpRange, ServerSettings};

/// X-Forwarded-For entries looked at, from the right; more are ignored.
const MAX_HOPS: usize = 32;

/// The proxies whose X-Forwarded-For is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpRange>);

impl TrustedProxies {
    pub fn from_settings(server: &ServerSettings) -> anyhow::Result<TrustedProxies> {
        let ranges = server.trusted_proxies.iter().map(|p| IpRange::parse(p)).collect::<Result<Vec<_>, _>>();
        Ok(TrustedProxies(ranges.map_err(|e| anyhow::anyhow!("server.trusted_proxies: {e}"))?))
    }

    /// The client's address; None only when the connection has no peer
    /// address (not over TCP).
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        let forwarded_for = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
        Some(self.resolve(peer, forwarded_for))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    /// `forwarded_for`: the X-Forwarded-For header lines, in order.
    fn resolve<'a>(&self, peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = forwarded_for.flat_map(|line| line.split(',')).collect();
        for hop in hops.iter().rev().take(MAX_HOPS) {
            // What a trusted proxy passed on but is no address: that proxy
            // is the last party known.
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// "203.0.113.7", "2001:db8::1", or either with a port ("[2001:db8::1]:443").
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        let server =
            ServerSettings { trusted_proxies: list.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        TrustedProxies::from_settings(&server).unwrap()
    }

    fn resolve(p: &TrustedProxies, peer: &str, headers: &[&str]) -> String {
        p.resolve(peer.parse().unwrap(), headers.iter().copied()).to_string()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let none = proxies(&[]);
        assert_eq!(resolve(&none, "203.0.113.7", &["198.51.100.9"]), "203.0.113.7");
        assert_eq!(resolve(&none, "::ffff:203.0.113.7", &[]), "203.0.113.7");
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(resolve(&p, "203.0.113.7", &["10.0.0.5, 198.51.100.9"]), "203.0.113.7");
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_address_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "::1"]);
        assert_eq!(resolve(&p, "10.0.0.2", &["198.51.100.9"]), "198.51.100.9");
        assert_eq!(resolve(&p, "::1", &["198.51.100.9, 10.1.1.1"]), "198.51.100.9", "through two proxies");
        assert_eq!(resolve(&p, "10.0.0.2", &["6.6.6.6, 198.51.100.9"]), "198.51.100.9", "the client's own entry");
        assert_eq!(resolve(&p, "10.0.0.2", &["6.6.6.6", "198.51.100.9"]), "198.51.100.9", "header lines in order");
        assert_eq!(resolve(&p, "10.0.0.2", &["[2001:db8::7]:443"]), "2001:db8::7", "with a port");
        assert_eq!(resolve(&p, "10.0.0.2", &[]), "10.0.0.2", "no header: the proxy itself");
        assert_eq!(resolve(&p, "10.0.0.2", &["198.51.100.9, unknown"]), "10.0.0.2", "garbage from the proxy");
        assert_eq!(resolve(&p, "10.0.0.2", &["10.0.0.3"]), "10.0.0.3", "only proxies: the farthest");
    }
}
