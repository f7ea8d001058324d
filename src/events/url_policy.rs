//! Where merchant webhooks may go: public addresses only, unless
//! `webhooks.allow_private_urls`. An API key holder chooses an endpoint's
//! URL, and till POSTs to it from inside the operator's network: without
//! this, a key could make till reach its loopback, the LAN or a cloud
//! metadata service (SSRF).
//!
//! Checked twice. When an endpoint is created, its URL's address, or every
//! address its name resolves to, must be public (a name that does not
//! resolve is taken: the second check guards it). At each delivery the
//! connection itself goes only to a public address: the webhook client's
//! resolver [`PublicOnly`] drops the others, so a name that resolved outside
//! at creation and inside now (DNS rebinding) finds nothing to connect to,
//! and [`check_delivery_url`] covers URLs that name an address, which HTTP
//! clients connect to without asking a resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest wait for a name's addresses when an endpoint is created; past it
/// the URL is taken and the delivery's resolver decides.
const LOOKUP_TIMEOUT_MS: u64 = 2_000;

/// A URL or address refused: what it is, said without the addresses a name
/// resolves to (they are the operator's business, not the key holder's).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotPublic(String);

/// Why `ip` is not a public address, or `None` when it is one.
pub fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => not_public_v4(v4),
        IpAddr::V6(v6) => not_public_v6(v6),
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if a == 100 && (b & 0xc0) == 64 {
        Some("a shared (CGNAT) address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if a >= 240 {
        Some("a reserved or broadcast address")
    } else {
        None
    }
}

fn not_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    // An IPv4 address in an IPv6 one reaches that IPv4 address: judge it.
    // ::ffff:0:0/96 (mapped), 64:ff9b::/96 (NAT64), 2002::/16 (6to4).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return not_public_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return not_public_v4(embedded(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return not_public_v4(embedded(segments[1], segments[2]));
    }
    match segments[0] {
        s if s & 0xff00 == 0xff00 => Some("a multicast address"),
        s if s & 0xffc0 == 0xfe80 => Some("a link-local address"),
        s if s & 0xffc0 == 0xfec0 => Some("a site-local address"),
        s if s & 0xfe00 == 0xfc00 => Some("a unique-local address"),
        // ::/96 besides :: and ::1: the deprecated IPv4-compatible form.
        0 if segments[1..6] == [0; 5] => Some("an IPv4-compatible address"),
        _ => None,
    }
}

/// When an endpoint is created: refuses a URL whose
/// address, or any address its name resolves to now, is not public, and a
/// `localhost` name (RFC 6761: the loopback, whatever DNS would say).
pub async fn check_endpoint_url(url: &str, allow_private: bool) -> Result<(), NotPublic> {
    if allow_private {
        return Ok(());
    }
    let parsed = parse(url)?;
    let Host::Name(name) = check_ip_literal(&parsed)? else {
        return Ok(());
    };
    let bare = name.trim_end_matches('.').to_ascii_lowercase();
    if bare == "localhost" || bare.ends_with(".localhost") {
        return Err(NotPublic(format!("url must lead to a public address: {name} is a loopback address")));
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let lookup = lookup(name.to_string(), port);
    let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_millis(LOOKUP_TIMEOUT_MS), lookup).await else {
        // Unknown here, or slow: the delivery's resolver still refuses
        // whatever is not public.
        return Ok(());
    };
    match addrs.iter().find_map(|a| not_public(a.ip())) {
        Some(what) => Err(NotPublic(format!("url must lead to a public address: {name} resolves to {what}"))),
        None => Ok(()),
    }
}

/// At each delivery: refuses a URL whose written address is not public
/// (names are [`PublicOnly`]'s to judge).
pub fn check_delivery_url(url: &str) -> Result<(), NotPublic> {
    check_ip_literal(&parse(url)?).map(drop)
}

fn parse(url: &str) -> Result<Url, NotPublic> {
    Url::parse(url).map_err(|e| NotPublic(format!("url is not a valid URL: {e}")))
}

/// A URL's host: an address, or a name still to resolve.
#[derive(Debug, PartialEq)]
enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// Refuses a URL naming an address that is not public; names pass, as
/// [`PublicOnly`] resolves them. Needed at each delivery too, since HTTP
/// clients connect to an address written in a URL without a resolver.
fn check_ip_literal(url: &Url) -> Result<Host<'_>, NotPublic> {
    let host = url.host_str().ok_or_else(|| NotPublic("url has no host".into()))?;
    // The URL parser writes an address in its one canonical form
    // (2130706433 and 0x7f.1 are 127.0.0.1), an IPv6 one in brackets.
    let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else {
        return Ok(Host::Name(host));
    };
    match not_public(ip) {
        Some(what) => Err(NotPublic(format!("url must lead to a public address: {ip} is {what}"))),
        None => Ok(Host::Ip(ip)),
    }
}

/// The system's resolver (getaddrinfo, as reqwest's own), off the executor.
async fn lookup(name: String, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    tokio::task::spawn_blocking(move || (name.as_str(), port).to_socket_addrs().map(Iterator::collect))
        .await
        .map_err(std::io::Error::other)?
}

/// The webhook client's resolver: the system's, less every address that
/// is not public. A name with none left fails to resolve, so the delivery
/// fails as an unreachable endpoint does, and is retried or dead-lettered.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let name = name.as_str().to_string();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let addrs = lookup(name.clone(), 0).await?;
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| not_public(a.ip()).is_none()).collect();
            if public.is_empty() {
                return Err(NotPublic(format!("{name} resolves to no public address")).into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        let inside = [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
        ];
        for ip in inside {
            assert!(not_public(ip.parse().unwrap()).is_some(), "{ip} is not public");
        }
        let outside = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "169.253.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for ip in outside {
            assert_eq!(not_public(ip.parse().unwrap()), None, "{ip} is public");
        }
    }

    #[test]
    fn addresses_in_urls_are_judged_however_they_are_written() {
        let url = |s: &str| Url::parse(s).unwrap();
        for refused in ["http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/", "http://[::ffff:7f00:1]/"] {
            assert!(check_ip_literal(&url(refused)).is_err(), "{refused}");
        }
        assert_eq!(check_ip_literal(&url("http://8.8.8.8/")).unwrap(), Host::Ip("8.8.8.8".parse().unwrap()));
        assert_eq!(check_ip_literal(&url("https://Shop.example./")).unwrap(), Host::Name("shop.example."));
    }

    #[tokio::test]
    async fn localhost_names_are_refused_without_asking_dns() {
        for refused in ["http://localhost:1/", "http://LOCALHOST./", "http://a.b.localhost:8080/"] {
            assert!(check_endpoint_url(refused, false).await.is_err(), "{refused}");
            assert!(check_endpoint_url(refused, true).await.is_ok(), "{refused} when allowed");
        }
        assert!(check_endpoint_url("http://localhost.example/", false).await.is_ok());
    }

    #[tokio::test]
    async fn the_resolver_keeps_no_address_inside() {
        let err = PublicOnly.resolve("localhost".parse().unwrap()).await.err().expect("localhost is refused");
        assert!(err.to_string().contains("no public address"), "{err}");
    }
}
