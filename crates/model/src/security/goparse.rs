//! Parsers that accept what Go's `net/netip` and `strconv` accept and fail with the same
//! messages, because Istio embeds those messages in its AuthorizationPolicy errors
//! (`bad CIDR range (…): netip.ParsePrefix(…): …`, `bad port (…): strconv.ParseUint: …`).

/// Address family of a parsed address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    /// IPv6; `true` when a `%zone` was given.
    V6 {
        zone: bool,
    },
}

struct AddrError<'a> {
    msg: String,
    at: Option<&'a str>,
}

impl<'a> AddrError<'a> {
    fn new(msg: impl Into<String>) -> Self {
        AddrError {
            msg: msg.into(),
            at: None,
        }
    }

    fn at(msg: impl Into<String>, at: &'a str) -> Self {
        AddrError {
            msg: msg.into(),
            at: Some(at),
        }
    }

    fn render(&self, input: &str) -> String {
        match self.at {
            Some(at) if !at.is_empty() => {
                format!("ParseAddr({input:?}): {} (at {at:?})", self.msg)
            }
            _ => format!("ParseAddr({input:?}): {}", self.msg),
        }
    }
}

/// Go's `netip.ParseAddr`: the family on success, Go's error text on failure.
pub fn parse_addr(s: &str) -> Result<Family, String> {
    for b in s.bytes() {
        match b {
            b'.' => return parse_v4(s).map(|_| Family::V4).map_err(|e| e.render(s)),
            b':' => return parse_v6(s),
            b'%' => return Err(AddrError::new("missing IPv6 address").render(s)),
            _ => {}
        }
    }
    Err(AddrError::new("unable to parse IP").render(s))
}

fn parse_v4(s: &str) -> Result<[u8; 4], AddrError<'_>> {
    let bytes = s.as_bytes();
    let mut fields = [0u8; 4];
    let mut val: u32 = 0;
    let mut pos = 0usize;
    let mut digits = 0usize;
    for (i, &c) in bytes.iter().enumerate() {
        if c.is_ascii_digit() {
            if digits == 1 && val == 0 {
                return Err(AddrError::new("IPv4 field has octet with leading zero"));
            }
            val = val * 10 + u32::from(c - b'0');
            digits += 1;
            if val > 255 {
                return Err(AddrError::new("IPv4 field has value >255"));
            }
        } else if c == b'.' {
            if i == 0 || i == bytes.len() - 1 || bytes[i - 1] == b'.' {
                return Err(AddrError::at(
                    "IPv4 field must have at least one digit",
                    &s[i..],
                ));
            }
            if pos == 3 {
                return Err(AddrError::new("IPv4 address too long"));
            }
            fields[pos] = val as u8;
            pos += 1;
            val = 0;
            digits = 0;
        } else {
            return Err(AddrError::at("unexpected character", &s[i..]));
        }
    }
    if pos < 3 {
        return Err(AddrError::new("IPv4 address too short"));
    }
    fields[3] = val as u8;
    Ok(fields)
}

fn parse_v6(input: &str) -> Result<Family, String> {
    let fail = |e: AddrError<'_>| Err(e.render(input));
    let (mut s, zone) = match input.find('%') {
        Some(i) => {
            if input[i + 1..].is_empty() {
                return fail(AddrError::new("zone must be a non-empty string"));
            }
            (&input[..i], true)
        }
        None => (input, false),
    };
    let done = Family::V6 { zone };
    let mut ellipsis: Option<usize> = None;
    if s.starts_with("::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return Ok(done);
        }
    }
    let mut i = 0usize;
    while i < 16 {
        let bytes = s.as_bytes();
        let mut off = 0usize;
        let mut acc: u32 = 0;
        while off < bytes.len() {
            let Some(d) = (bytes[off] as char).to_digit(16) else {
                break;
            };
            acc = (acc << 4) + d;
            if acc > 0xffff {
                return fail(AddrError::at("IPv6 field has value >=2^16", s));
            }
            off += 1;
        }
        if off == 0 {
            return fail(AddrError::at(
                "each colon-separated field must have at least one digit",
                s,
            ));
        }
        if off < bytes.len() && bytes[off] == b'.' {
            if ellipsis.is_none() && i != 12 {
                return fail(AddrError::at(
                    "embedded IPv4 address must replace the final 2 fields of the address",
                    s,
                ));
            }
            if i + 4 > 16 {
                return fail(AddrError::at(
                    "too many hex fields to fit an embedded IPv4 at the end of the address",
                    s,
                ));
            }
            if let Err(e) = parse_v4(s) {
                let inner = e.render(s);
                return fail(AddrError::at(inner, s));
            }
            s = "";
            i += 4;
            break;
        }
        i += 2;
        s = &s[off..];
        if s.is_empty() {
            break;
        }
        if !s.starts_with(':') {
            return fail(AddrError::at("unexpected character, want colon", s));
        } else if s.len() == 1 {
            return fail(AddrError::at(
                "colon must be followed by more characters",
                s,
            ));
        }
        s = &s[1..];
        if s.starts_with(':') {
            if ellipsis.is_some() {
                return fail(AddrError::at("multiple :: in address", s));
            }
            ellipsis = Some(i);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return fail(AddrError::at("trailing garbage after address", s));
    }
    if i < 16 {
        if ellipsis.is_none() {
            return fail(AddrError::new("address string too short"));
        }
    } else if ellipsis.is_some() {
        return fail(AddrError::new(
            "the :: must expand to at least one field of zeros",
        ));
    }
    Ok(done)
}

/// Go's `netip.ParsePrefix`, returning Go's error text on failure.
pub fn parse_prefix(s: &str) -> Result<(), String> {
    let err = |msg: String| Err(format!("netip.ParsePrefix({s:?}): {msg}"));
    let Some(slash) = s.rfind('/') else {
        return err("no '/'".into());
    };
    let family = match parse_addr(&s[..slash]) {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    if family == (Family::V6 { zone: true }) {
        return err("IPv6 zones cannot be present in a prefix".into());
    }
    let bits = &s[slash + 1..];
    let bad_bits = || format!("bad bits after slash: {bits:?}");
    let first = bits.as_bytes().first().copied().unwrap_or(b'0');
    if bits.len() > 1 && !(b'1'..=b'9').contains(&first) {
        return err(bad_bits());
    }
    let Ok(n) = bits.parse::<u64>() else {
        return err(bad_bits());
    };
    if !bits.bytes().all(|c| c.is_ascii_digit()) {
        return err(bad_bits());
    }
    let max = if family == Family::V4 { 32 } else { 128 };
    if n > max {
        return err("prefix length out of range".into());
    }
    Ok(())
}

/// Go's `strconv.ParseUint(s, 10, 32)`, with its error text.
pub fn parse_uint32(s: &str) -> Result<u32, String> {
    let syntax = || format!("strconv.ParseUint: parsing {s:?}: invalid syntax");
    let range = || format!("strconv.ParseUint: parsing {s:?}: value out of range");
    if s.is_empty() {
        return Err(syntax());
    }
    let mut n: u64 = 0;
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return Err(syntax());
        }
        n = n * 10 + u64::from(c - b'0');
        if n > u64::from(u32::MAX) {
            return Err(range());
        }
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_go_parses_them() {
        assert_eq!(parse_addr("10.1.2.3"), Ok(Family::V4));
        assert_eq!(parse_addr("::"), Ok(Family::V6 { zone: false }));
        assert_eq!(parse_addr("2001:db8::68"), Ok(Family::V6 { zone: false }));
        assert_eq!(
            parse_addr("::ffff:10.0.0.1"),
            Ok(Family::V6 { zone: false })
        );
        assert_eq!(parse_addr("fe80::1%eth0"), Ok(Family::V6 { zone: true }));
        assert_eq!(
            parse_addr("10.0.0.256").unwrap_err(),
            "ParseAddr(\"10.0.0.256\"): IPv4 field has value >255"
        );
        assert_eq!(
            parse_addr("10.0.0").unwrap_err(),
            "ParseAddr(\"10.0.0\"): IPv4 address too short"
        );
        assert_eq!(
            parse_addr("10.0.a.1").unwrap_err(),
            "ParseAddr(\"10.0.a.1\"): unexpected character (at \"a.1\")"
        );
        assert_eq!(
            parse_addr("abc").unwrap_err(),
            "ParseAddr(\"abc\"): unable to parse IP"
        );
        assert_eq!(
            parse_addr("1::2::3").unwrap_err(),
            "ParseAddr(\"1::2::3\"): multiple :: in address (at \":3\")"
        );
        assert_eq!(
            parse_addr("1:2:3").unwrap_err(),
            "ParseAddr(\"1:2:3\"): address string too short"
        );
    }

    #[test]
    fn prefixes_as_go_parses_them() {
        assert!(parse_prefix("10.0.0.0/8").is_ok());
        assert!(parse_prefix("10.0.0.0/0").is_ok());
        assert!(parse_prefix("2001:db8::/32").is_ok());
        assert_eq!(
            parse_prefix("10.0.0.0/33").unwrap_err(),
            "netip.ParsePrefix(\"10.0.0.0/33\"): prefix length out of range"
        );
        assert_eq!(
            parse_prefix("10.0.0.0/08").unwrap_err(),
            "netip.ParsePrefix(\"10.0.0.0/08\"): bad bits after slash: \"08\""
        );
        assert_eq!(
            parse_prefix("10.0.0.0/").unwrap_err(),
            "netip.ParsePrefix(\"10.0.0.0/\"): bad bits after slash: \"\""
        );
        assert_eq!(
            parse_prefix("1.2.3/24").unwrap_err(),
            "netip.ParsePrefix(\"1.2.3/24\"): ParseAddr(\"1.2.3\"): IPv4 address too short"
        );
    }

    #[test]
    fn ports_as_go_parses_them() {
        assert_eq!(parse_uint32("8080"), Ok(8080));
        assert_eq!(
            parse_uint32("http").unwrap_err(),
            "strconv.ParseUint: parsing \"http\": invalid syntax"
        );
        assert_eq!(
            parse_uint32("99999999999").unwrap_err(),
            "strconv.ParseUint: parsing \"99999999999\": value out of range"
        );
    }
}
