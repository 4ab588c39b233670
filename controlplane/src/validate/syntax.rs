//! The syntax of values: memory and CPU quantities, names, paths, addresses, CIDRs,
//! image references, signals, capabilities and node attributes. Each check is a pure
//! function from a string to `Ok` or the reason it is wrong; `super` attaches field paths.

use super::*;

// ---------------------------------------------------------------------------------
// Quantities
// ---------------------------------------------------------------------------------

/// A memory quantity in bytes, read as Docker reads it: a number, optionally with a
/// decimal fraction (`1.5g`), then an optional unit `b`, `k`, `m`, `g`, `t` or `p`,
/// any case, optionally followed by `b`, `i` or `ib` (`512m`, `512MB`, `512Mi`,
/// `512MiB`). Every unit is a power of 1024; Kubernetes' decimal units and milli-bytes
/// are not supported, so `1G` is 1024³ bytes as Docker enforces it. A fraction of a
/// byte is rounded down; a fraction without a unit is refused. No spaces or signs.
/// At most `i64::MAX` bytes, Docker's own bound.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let (int, frac, suffix) = split_decimal(s)?;
    let unit = memory_unit(suffix)?;
    if unit == 1 && frac.bytes().any(|b| b != b'0') {
        return Err(format!("{s:?}: a byte count must be a whole number"));
    }
    let bytes = scale(int, frac, unit).map_err(|e| format!("{s:?}: {e}"))?;
    if bytes > i64::MAX as u128 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes as u64)
}

/// A CPU quantity in millicores, read as Kubernetes reads it: cores with at most three
/// decimals (`"2"`, `"1.5"`, `"0.25"`, `".5"`) or whole millicores (`"1500m"`). Finer
/// than a millicore, signs, spaces and other units are refused.
pub fn parse_cpus(s: &str) -> Result<u64, String> {
    let (int, frac, suffix) = split_decimal(s)?;
    let millis = match suffix {
        "m" if !frac.is_empty() => {
            return Err(format!("{s:?}: millicores must be a whole number"));
        }
        "m" => scale(int, "", 1),
        "" if frac.trim_end_matches('0').len() > 3 => {
            return Err(format!("{s:?} is finer than a millicore (0.001)"));
        }
        "" => scale(int, frac, 1000),
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {suffix:?}; write cores (\"1.5\") or millicores (\"1500m\")"
            ));
        }
    };
    let millis = millis.map_err(|e| format!("{s:?}: {e}"))?;
    u64::try_from(millis).map_err(|_| format!("{s:?} is too large"))
}

/// Splits `"12.5xy"` into `("12", "5", "xy")`. Digits may be missing on one side of
/// the dot but not on both, and the number may not end with the dot.
pub(super) fn split_decimal(s: &str) -> Result<(&str, &str, &str), String> {
    if s.is_empty() {
        return Err(REQUIRED.into());
    }
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(format!("{s:?} must start with a number"));
    }
    if frac.contains('.') {
        return Err(format!("{s:?} has more than one '.'"));
    }
    if number.ends_with('.') {
        return Err(format!("{s:?} must have digits after '.'"));
    }
    Ok((int, frac, suffix))
}

/// The multiplier of a memory unit suffix; see [`parse_memory`].
pub(super) fn memory_unit(suffix: &str) -> Result<u64, String> {
    let lower = suffix.to_ascii_lowercase();
    let power = match lower.as_bytes().first() {
        Some(b'k') => 1,
        Some(b'm') => 2,
        Some(b'g') => 3,
        Some(b't') => 4,
        Some(b'p') => 5,
        _ => 0,
    };
    let rest = if power > 0 { &lower[1..] } else { &lower[..] };
    match rest {
        "" | "b" => Ok(1024u64.pow(power)),
        "i" | "ib" if power > 0 => Ok(1024u64.pow(power)),
        _ => Err(format!(
            "unknown unit {suffix:?}: use b, k, m, g, t or p, optionally followed by b, i or ib \
             (512m, 1Gi), all powers of 1024"
        )),
    }
}

/// `int.frac × unit`, rounded down.
pub(super) fn scale(int: &str, frac: &str, unit: u64) -> Result<u128, String> {
    let whole: u128 = if int.is_empty() {
        0
    } else {
        int.parse::<u64>()
            .map_err(|_| "is too large".to_string())?
            .into()
    };
    let frac = frac.trim_end_matches('0');
    if frac.len() > 18 {
        return Err("has too many decimal places".into());
    }
    let part: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u64>()
            .map_err(|_| "is not a number".to_string())?
            .into()
    };
    let denominator = 10u128.pow(frac.len() as u32);
    Ok(whole * u128::from(unit) + part * u128::from(unit) / denominator)
}

// ---------------------------------------------------------------------------------
// Syntax of names, references, paths and addresses
// ---------------------------------------------------------------------------------

pub(super) fn dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(REQUIRED.into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{c:?} is not allowed: use lower-case letters, digits and '-'"
        ));
    }
    if s.len() > 63 {
        return Err(format!("must be at most 63 characters, is {}", s.len()));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lower-case letter".into());
    }
    if s.ends_with('-') {
        return Err("must not end with '-'".into());
    }
    Ok(())
}

/// Dot-separated DNS labels of at most 63 characters each and `max` in all; upper-case
/// letters only when `upper`.
pub(super) fn dns_name(s: &str, max: usize, upper: bool) -> Result<(), String> {
    if s.is_empty() {
        return Err(REQUIRED.into());
    }
    if s.len() > max {
        return Err(format!("must be at most {max} characters, is {}", s.len()));
    }
    s.split('.')
        .try_for_each(|label| dns_name_label(label, upper))
}

pub(super) fn dns_name_label(label: &str, upper: bool) -> Result<(), String> {
    if label.is_empty() {
        return Err("must not have an empty label (a dot at an end, or two in a row)".into());
    }
    let allowed = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || (upper && c.is_ascii_uppercase())
    };
    if let Some(c) = label.chars().find(|c| !allowed(*c)) {
        let letters = if upper {
            "letters"
        } else {
            "lower-case letters"
        };
        return Err(format!(
            "{c:?} is not allowed: use {letters}, digits, '-' and '.'"
        ));
    }
    if label.len() > 63 {
        return Err(format!("label {label:?} is longer than 63 characters"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label {label:?} must not start or end with '-'"));
    }
    Ok(())
}

/// Docker's names of containers and volumes, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, of `min` to
/// `max` characters.
pub(super) fn docker_name(s: &str, min: usize, max: usize) -> Result<(), String> {
    if s.is_empty() {
        return Err(REQUIRED.into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed: use letters, digits, '_', '.' and '-'"
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit".into());
    }
    if s.len() < min || s.len() > max {
        return Err(format!("must be {min} to {max} characters, is {}", s.len()));
    }
    Ok(())
}

pub(super) fn object_name_syntax(s: &str) -> Result<(), String> {
    docker_name(s, 1, MAX_NAME_LEN)?;
    if !s.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must end with a letter or digit".into());
    }
    Ok(())
}

/// Allocation ids: letters, digits, '-' and '_', at most 128 characters.
pub(super) fn allocation_id(s: &str) -> Result<(), String> {
    if s.len() > 128 {
        return Err(format!("must be at most 128 characters, is {}", s.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(format!("{c:?} is not allowed in an allocation id"));
    }
    Ok(())
}

/// Text of at most `max` bytes without NUL (which neither Docker nor the kernel can
/// pass on).
pub(super) fn text(s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("must be at most {max} bytes, is {}", s.len()));
    }
    if s.contains('\0') {
        return Err("must not contain NUL".into());
    }
    Ok(())
}

/// An absolute path of at most [`MAX_VALUE_LEN`] bytes.
pub(super) fn absolute_path(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(REQUIRED.into());
    }
    if !s.starts_with('/') {
        return Err(format!("{s:?} must be an absolute path"));
    }
    text(s, MAX_VALUE_LEN)
}

/// `/a//b/./c/` → `/a/b/c`, to compare mount points.
pub(super) fn normalize_path(s: &str) -> String {
    let parts: Vec<&str> = s
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

pub(super) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("{s:?} is not an IP address"))
}

/// A CIDR block, `address/prefix`, such as `172.28.0.0/16` or `fd00::/64`.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(format!(
            "{s:?} must be an address and a prefix length, like 172.28.0.0/16"
        ));
    };
    let ip = parse_ip(addr)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let valid =
        !prefix.is_empty() && prefix.len() <= 3 && prefix.bytes().all(|b| b.is_ascii_digit());
    match prefix.parse::<u8>() {
        Ok(p) if valid && p <= max => Ok((ip, p)),
        _ => Err(format!(
            "prefix length {prefix:?} must be a number within 0..={max}"
        )),
    }
}

/// Whether `ip` lies inside the block `net/prefix`.
pub fn cidr_contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Parses an image reference following the grammar of Docker's distribution
/// reference: an optional registry host (a domain name, IPv4 or `[IPv6]`, with an
/// optional `:port`), a path of lower-case components (`[a-z0-9]+` joined by `.`, `_`,
/// `__` or dashes) separated by `/`, an optional `:tag` (`[\w][\w.-]{0,127}`) and an
/// optional `@algorithm:hex` digest (sha256, sha384 or sha512, lower-case hex). The
/// first component is the registry when more follow and it holds a `.` or `:`, is
/// `localhost`, or has upper-case letters, as Docker decides. The name (registry and
/// path) is at most 255 characters.
pub fn parse_image_reference(s: &str) -> Result<ImageReference<'_>, String> {
    if s.is_empty() {
        return Err(REQUIRED.into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    if let Some(d) = digest {
        image_digest(d)?;
    }
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        image_tag(t)?;
    }
    if name.is_empty() {
        return Err("repository name is required".into());
    }
    if name.len() > 255 {
        return Err(format!(
            "repository name must be at most 255 characters, is {}",
            name.len()
        ));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, path)) if looks_like_domain(first) => (Some(first), path),
        _ => (None, name),
    };
    if let Some(d) = domain {
        image_domain(d)?;
    }
    path.split('/').try_for_each(path_component)?;
    Ok(ImageReference {
        domain,
        path,
        tag,
        digest,
    })
}

pub(super) fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':', '['])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

/// `host[:port]`, host a domain name, IPv4 address or `[IPv6]`.
pub(super) fn image_domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(inner) = d.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return Err(format!("registry {d:?} has '[' without ']'"));
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("registry {d:?}: {v6:?} is not an IPv6 address"));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(format!("registry {d:?}: unexpected {after:?} after ']'")),
            },
        }
    } else {
        match d.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(d), None),
        }
    };
    if let Some(host) = host {
        dns_name(host, MAX_NAME_LEN, true).map_err(|e| format!("registry host {host:?}: {e}"))?;
    }
    if let Some(port) = port {
        let valid = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        match port.parse::<u16>() {
            Ok(p) if valid && p > 0 => {}
            _ => return Err(format!("registry port {port:?} must be within 1..=65535")),
        }
    }
    Ok(())
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or one or more `-`.
pub(super) fn path_component(c: &str) -> Result<(), String> {
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err(format!("repository path {c:?} must be lower-case"));
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return Err(format!(
                "repository path component {c:?} must start and end with a lower-case letter or digit"
            ));
        }
        if i == b.len() {
            return Ok(());
        }
        let sep_start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[sep_start..i];
        if sep.is_empty() {
            let ch = c[i..].chars().next().unwrap_or_default();
            return Err(format!("{ch:?} is not allowed in repository path {c:?}"));
        }
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return Err(format!(
                "{sep:?} in {c:?} is not a separator: use '.', '_', '__' or dashes"
            ));
        }
    }
}

/// `[\w][\w.-]{0,127}`
pub(super) fn image_tag(t: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let valid =
        t.starts_with(word) && t.len() <= 128 && t.chars().all(|c| word(c) || c == '.' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tag {t:?} must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ))
    }
}

/// `sha256:<64 hex>`, `sha384:<96 hex>` or `sha512:<128 hex>`, lower-case.
pub(super) fn image_digest(d: &str) -> Result<(), String> {
    let (algorithm, hex) = d.split_once(':').unwrap_or((d, ""));
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "digest {d:?} must be sha256:, sha384: or sha512: and hex"
            ));
        }
    };
    let valid = hex.len() == len
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "digest of {algorithm} must be {len} lower-case hex digits"
        ))
    }
}

/// A signal by name (any case, with or without `SIG`, `RTMIN+n`/`RTMAX-n`) or number.
pub(super) fn stop_signal(s: &str) -> Result<(), String> {
    let bad =
        || format!("{s:?} is not a signal: use a name such as SIGTERM or TERM, or a number 1..=64");
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u8>() {
            Ok(n) if (1..=64).contains(&n) => Ok(()),
            _ => Err(bad()),
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |prefix: &str, max: u8| {
        name.strip_prefix(prefix).is_some_and(|n| {
            n.bytes().all(|b| b.is_ascii_digit())
                && n.parse::<u8>().is_ok_and(|n| (1..=max).contains(&n))
        })
    };
    let known = SIGNALS.contains(&name)
        || name == "RTMIN"
        || name == "RTMAX"
        || realtime("RTMIN+", 15)
        || realtime("RTMAX-", 14);
    if known { Ok(()) } else { Err(bad()) }
}

/// `ALL`, or a capability name such as `NET_ADMIN` or `CAP_NET_ADMIN`.
pub(super) fn capability(s: &str) -> Result<(), String> {
    let name = s.strip_prefix("CAP_").unwrap_or(s);
    let valid = s == "ALL"
        || (name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a capability: use upper-case names such as NET_ADMIN or CAP_NET_ADMIN, or ALL"
        ))
    }
}

/// `node.name`, `node.labels.<key>`, and `node.id` when `id` is allowed.
pub(super) fn node_attribute(s: &str, id: bool) -> Result<(), String> {
    if s == "node.name" || (id && s == "node.id") {
        return Ok(());
    }
    match s.strip_prefix("node.labels.") {
        Some("") => Err("node.labels. needs a label key".into()),
        Some(_) => Ok(()),
        None if id => Err(format!(
            "{s:?} must be node.name, node.id or node.labels.<key>"
        )),
        None => Err(format!("{s:?} must be node.name or node.labels.<key>")),
    }
}

/// `(cpu|memory)(>|>=|<|<=)N%`, N within 0..=100.
pub(super) fn resource_threshold(s: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{s:?} must read like cpu>80% or memory>=90%: cpu or memory, then >, >=, < or <=, then 0 to 100 and %"
        )
    };
    let rest = s
        .strip_prefix("cpu")
        .or_else(|| s.strip_prefix("memory"))
        .ok_or_else(bad)?;
    let rest = [">=", "<=", ">", "<"]
        .iter()
        .find_map(|op| rest.strip_prefix(op))
        .ok_or_else(bad)?;
    let n = rest.strip_suffix('%').ok_or_else(bad)?;
    let valid = !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit());
    match n.parse::<u32>() {
        Ok(n) if valid && n <= 100 => Ok(()),
        _ => Err(bad()),
    }
}
