//! What a key record may be restricted to: a set of scopes and a list of source networks,
//! checked by [`Verifier::verify_and_acquire`](super::Verifier::verify_and_acquire) before
//! anything is charged.
//!
//! Scopes are bits of a `u16` mask (the caller numbers them); a request needs at most one.
//! Networks are IPv4 and IPv6 CIDRs parsed once, when the record is inserted. Addresses are
//! compared as 128-bit numbers, left-aligned (an IPv4 address in the top 32 bits), so one
//! prefix compare serves both families; the family is compared too, so `::/0` does not let
//! IPv4 in nor `0.0.0.0/0` IPv6. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
//! dual-stack socket reports for an IPv4 peer) is its IPv4 address, and so is an IPv4-mapped
//! network of prefix 96 or more.

use std::net::IpAddr;

use crate::error::{CoreError, CoreResult};

/// Why a restricted record's request was stopped before it was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The call lacked what a check needs (the request's scope, or its source address for a
    /// record with networks): call again with them.
    Unchecked,
    /// The record lacks the scope the request needs.
    Scope,
    /// The source address is in none of the record's networks, or is not an address.
    SourceAddress,
}

/// The request's side of the checks: the scope bit it needs (0 for none) and its source
/// address, each `None` when the caller has not worked it out (a restricted record then
/// answers [`Check::Unchecked`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestContext<'a> {
    /// The bit of the scope the request needs (0: none).
    pub scope: Option<u16>,
    /// The request's source address, as text.
    pub address: Option<&'a str>,
}

/// An address: its family and its bits, left-aligned in 128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Address {
    v4: bool,
    bits: u128,
}

impl Address {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::v4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::v4(u32::from(v4)),
                None => Self {
                    v4: false,
                    bits: u128::from(v6),
                },
            },
        }
    }

    fn v4(bits: u32) -> Self {
        Self {
            v4: true,
            bits: u128::from(bits) << 96,
        }
    }

    /// Parses an address in its usual text form (no zone, no brackets, no port).
    fn parse(text: &str) -> Option<Self> {
        text.parse::<IpAddr>().ok().map(Self::of)
    }
}

/// One network: an address with its host bits cleared, and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    v4: bool,
    bits: u128,
    prefix: u8,
}

/// The mask of the `prefix` leading bits (of 128; `prefix` at most 128).
#[inline]
fn mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl Network {
    /// Parses `address[/prefix]`: a bare address is one host; host bits are cleared (as
    /// Python's `ip_network(..., strict=False)` does).
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] for anything else.
    pub fn parse(text: &str) -> CoreResult<Self> {
        const BAD: CoreError =
            CoreError::InvalidArgument("a network is an IP address with an optional /prefix");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let ip: IpAddr = address.parse().map_err(|_| BAD)?;
        let width: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) if (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| BAD)?
            }
            Some(_) => return Err(BAD),
        };
        if prefix > width {
            return Err(BAD);
        }
        let address = Address::of(ip);
        // An IPv4-mapped network is the IPv4 one (a shorter prefix reaches past the mapping).
        let prefix = match ip {
            IpAddr::V6(_) if address.v4 && prefix >= 96 => prefix - 96,
            IpAddr::V6(_) if address.v4 => {
                return Ok(Self::masked(false, ip_bits(ip), prefix));
            }
            _ => prefix,
        };
        Ok(Self::masked(address.v4, address.bits, prefix))
    }

    fn masked(v4: bool, bits: u128, prefix: u8) -> Self {
        // `prefix` counts from the left-aligned top bit, for both families.
        Self {
            v4,
            bits: bits & mask(prefix),
            prefix,
        }
    }

    #[inline]
    fn contains(&self, address: Address) -> bool {
        self.v4 == address.v4 && (address.bits ^ self.bits) & mask(self.prefix) == 0
    }
}

fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// A record's restrictions: the scopes it has (`None`: every one) and the networks it may be
/// used from (empty: anywhere).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restriction {
    scopes: Option<u16>,
    networks: Box<[Network]>,
}

impl Restriction {
    /// A restriction to the scopes in `scopes` (`None`: all) and to `networks` (parsed
    /// here); `None` when that restricts nothing.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] for a network that does not parse.
    pub fn new<S: AsRef<str>>(scopes: Option<u16>, networks: &[S]) -> CoreResult<Option<Self>> {
        let networks = networks
            .iter()
            .map(|n| Network::parse(n.as_ref()))
            .collect::<CoreResult<Box<[Network]>>>()?;
        if scopes.is_none() && networks.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self { scopes, networks }))
    }

    /// Whether a request in `context` passes: the scope first, then the source address.
    ///
    /// # Errors
    /// The [`Check`] that stopped it.
    pub fn check(&self, context: RequestContext<'_>) -> Result<(), Check> {
        if let Some(mask) = self.scopes {
            match context.scope {
                None => return Err(Check::Unchecked),
                Some(needed) if needed & !mask != 0 => return Err(Check::Scope),
                Some(_) => {}
            }
        }
        if !self.networks.is_empty() {
            let Some(text) = context.address else {
                return Err(Check::Unchecked);
            };
            let Some(address) = Address::parse(text) else {
                return Err(Check::SourceAddress);
            };
            if !self.networks.iter().any(|n| n.contains(address)) {
                return Err(Check::SourceAddress);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(networks: &[&str], address: &str) -> bool {
        let r = Restriction::new(None, networks).unwrap().unwrap();
        match r.check(RequestContext {
            scope: Some(0),
            address: Some(address),
        }) {
            Ok(()) => true,
            Err(Check::SourceAddress) => false,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn networks_of_both_families() {
        assert!(allows(&["10.0.0.0/8"], "10.255.1.2"));
        assert!(!allows(&["10.0.0.0/8"], "11.0.0.1"));
        assert!(allows(&["10.1.2.3/8"], "10.9.9.9"), "host bits are cleared");
        assert!(allows(&["192.0.2.7/32"], "192.0.2.7"));
        assert!(!allows(&["192.0.2.7/32"], "192.0.2.8"));
        assert!(allows(&["192.0.2.7"], "192.0.2.7"));
        assert!(allows(&["0.0.0.0/0"], "203.0.113.9"));
        assert!(
            !allows(&["0.0.0.0/0"], "2001:db8::1"),
            "IPv4 /0 is not IPv6"
        );
        assert!(!allows(&["::/0"], "127.0.0.1"), "IPv6 /0 is not IPv4");
        assert!(allows(&["::/0"], "2001:db8::1"));
        assert!(allows(&["::1/128"], "::1"));
        assert!(!allows(&["::1/128"], "::2"));
        assert!(allows(&["2001:db8::/32"], "2001:db8:ffff::1"));
        assert!(!allows(&["2001:db8::/32"], "2001:db9::1"));
    }

    #[test]
    fn ipv4_mapped_addresses_and_networks_are_ipv4() {
        assert!(allows(&["10.0.0.0/8"], "::ffff:10.1.2.3"));
        assert!(!allows(&["10.0.0.0/8"], "::ffff:11.1.2.3"));
        assert!(allows(&["::ffff:10.0.0.0/104"], "10.1.2.3"));
        assert!(allows(&["::ffff:0.0.0.0/96"], "1.2.3.4"));
        assert!(
            !allows(&["::ffff:0:0/80"], "1.2.3.4"),
            "reaches past the mapping"
        );
    }

    #[test]
    fn malformed_addresses_are_refused_as_source_address() {
        for bad in [
            "",
            "10.0.0",
            "10.0.0.256",
            "nope",
            "10.0.0.1:80",
            "[::1]",
            "::1%lo",
        ] {
            assert!(!allows(&["0.0.0.0/0", "::/0"], bad), "{bad:?}");
        }
    }

    #[test]
    fn malformed_networks_are_errors() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "x/8",
            "10.0.0.0/1000",
            " 10.0.0.0/8",
        ] {
            assert!(Network::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_then_networks_and_what_is_missing() {
        let r = Restriction::new(Some(0b101), &["10.0.0.0/8"])
            .unwrap()
            .unwrap();
        let at = |scope, address| r.check(RequestContext { scope, address });
        assert_eq!(at(None, Some("10.0.0.1")), Err(Check::Unchecked));
        assert_eq!(at(Some(0b100), None), Err(Check::Unchecked));
        assert_eq!(at(Some(0b010), None), Err(Check::Scope));
        assert_eq!(at(Some(0b010), Some("1.1.1.1")), Err(Check::Scope));
        assert_eq!(at(Some(0b100), Some("1.1.1.1")), Err(Check::SourceAddress));
        assert_eq!(at(Some(0), Some("10.0.0.1")), Ok(()));
        assert_eq!(at(Some(0b001), Some("10.0.0.1")), Ok(()));
        assert!(Restriction::new::<&str>(None, &[]).unwrap().is_none());
        let scopes_only = Restriction::new::<&str>(Some(1), &[]).unwrap().unwrap();
        assert_eq!(
            scopes_only.check(RequestContext {
                scope: Some(1),
                address: None
            }),
            Ok(())
        );
    }
}
