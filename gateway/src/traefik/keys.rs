//! The table of label keys the renderer understands: for every position in Traefik's
//! dynamic configuration, the lower-case label segment, the correctly cased JSON key,
//! the type of the value and the Traefik majors that accept it.
//!
//! Traefik rejects a whole document over one unknown key, so anything outside this
//! table is refused (for that service only) instead of being passed through.

use super::TraefikVersion;

/// Which Traefik majors accept a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Both,
    V2Only,
    V3Only,
}

impl Since {
    pub fn accepts(self, version: TraefikVersion) -> bool {
        match self {
            Since::Both => true,
            Since::V2Only => version == TraefikVersion::V2,
            Since::V3Only => version == TraefikVersion::V3,
        }
    }
}

/// What a label value turns into.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Str,
    Bool,
    Int,
    /// A Go duration ("10s", "1m30s") or a number of seconds; emitted as a string.
    Duration,
    /// Comma-separated strings.
    List,
    /// Comma-separated integers.
    IntList,
    /// Free keys below this one (header names), each a string value; key case is kept.
    Map,
    /// A nested object.
    Obj(&'static [Field]),
    /// A nested object that Traefik accepts empty (router `tls`, `sticky`, `compress`...):
    /// `true` creates it, `false` leaves it out; sub-keys may follow.
    Flag(&'static [Field]),
    /// `name[0].key`: a list of objects addressed by index.
    Indexed(&'static [Field]),
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The lower-case label segment.
    pub label: &'static str,
    /// The key in the JSON document.
    pub json: &'static str,
    pub kind: Kind,
    pub since: Since,
}

const fn f(label: &'static str, json: &'static str, kind: Kind) -> Field {
    Field {
        label,
        json,
        kind,
        since: Since::Both,
    }
}

const fn v3(label: &'static str, json: &'static str, kind: Kind) -> Field {
    Field {
        label,
        json,
        kind,
        since: Since::V3Only,
    }
}

const fn v2(label: &'static str, json: &'static str, kind: Kind) -> Field {
    Field {
        label,
        json,
        kind,
        since: Since::V2Only,
    }
}

/// Looks up the field whose label segment is `segment` (already lower-cased).
pub fn find(fields: &'static [Field], segment: &str) -> Option<&'static Field> {
    fields.iter().find(|f| f.label == segment)
}

use Kind::*;

const TLS_DOMAIN: &[Field] = &[f("main", "main", Str), f("sans", "sans", List)];

const HTTP_ROUTER_TLS: &[Field] = &[
    f("certresolver", "certResolver", Str),
    f("options", "options", Str),
    f("domains", "domains", Indexed(TLS_DOMAIN)),
];

pub const HTTP_ROUTER: &[Field] = &[
    f("rule", "rule", Str),
    v3("rulesyntax", "ruleSyntax", Str),
    f("service", "service", Str),
    f("entrypoints", "entryPoints", List),
    f("middlewares", "middlewares", List),
    f("priority", "priority", Int),
    f("tls", "tls", Flag(HTTP_ROUTER_TLS)),
];

/// The `server` template of a load balancer: its fields fill every server the
/// renderer derives from healthy allocations; `port` and `scheme` build the address.
pub const HTTP_SERVER: &[Field] = &[
    f("port", "port", Int),
    f("scheme", "scheme", Str),
    v3("weight", "weight", Int),
    v3("preservepath", "preservePath", Bool),
];

const COOKIE: &[Field] = &[
    f("name", "name", Str),
    f("secure", "secure", Bool),
    f("httponly", "httpOnly", Bool),
    f("samesite", "sameSite", Str),
];

const STICKY: &[Field] = &[f("cookie", "cookie", Flag(COOKIE))];

const HEALTH_CHECK: &[Field] = &[
    f("path", "path", Str),
    f("port", "port", Int),
    f("scheme", "scheme", Str),
    f("hostname", "hostname", Str),
    f("method", "method", Str),
    f("interval", "interval", Duration),
    f("timeout", "timeout", Duration),
    f("followredirects", "followRedirects", Bool),
    f("headers", "headers", Map),
];

const RESPONSE_FORWARDING: &[Field] = &[f("flushinterval", "flushInterval", Duration)];

pub const HTTP_LOAD_BALANCER: &[Field] = &[
    f("server", "server", Obj(HTTP_SERVER)),
    f("passhostheader", "passHostHeader", Bool),
    f("serverstransport", "serversTransport", Str),
    f("healthcheck", "healthCheck", Obj(HEALTH_CHECK)),
    f("sticky", "sticky", Flag(STICKY)),
    f(
        "responseforwarding",
        "responseForwarding",
        Obj(RESPONSE_FORWARDING),
    ),
];

/// The kinds of service labels can declare (Traefik's Docker provider builds only
/// load balancers from labels).
pub const HTTP_SERVICE: &[Field] = &[f("loadbalancer", "loadBalancer", Obj(HTTP_LOAD_BALANCER))];

const IP_STRATEGY: &[Field] = &[
    f("depth", "depth", Int),
    f("excludedips", "excludedIPs", List),
];

const SOURCE_CRITERION: &[Field] = &[
    f("ipstrategy", "ipStrategy", Flag(IP_STRATEGY)),
    f("requestheadername", "requestHeaderName", Str),
    f("requesthost", "requestHost", Bool),
];

const STRIP_PREFIX: &[Field] = &[
    f("prefixes", "prefixes", List),
    f("forceslash", "forceSlash", Bool),
];

const ADD_PREFIX: &[Field] = &[f("prefix", "prefix", Str)];

const HEADERS: &[Field] = &[
    f("customrequestheaders", "customRequestHeaders", Map),
    f("customresponseheaders", "customResponseHeaders", Map),
    f(
        "accesscontrolallowcredentials",
        "accessControlAllowCredentials",
        Bool,
    ),
    f(
        "accesscontrolallowheaders",
        "accessControlAllowHeaders",
        List,
    ),
    f(
        "accesscontrolallowmethods",
        "accessControlAllowMethods",
        List,
    ),
    f(
        "accesscontrolalloworiginlist",
        "accessControlAllowOriginList",
        List,
    ),
    f(
        "accesscontrolalloworiginlistregex",
        "accessControlAllowOriginListRegex",
        List,
    ),
    f(
        "accesscontrolexposeheaders",
        "accessControlExposeHeaders",
        List,
    ),
    f("accesscontrolmaxage", "accessControlMaxAge", Int),
    f("addvaryheader", "addVaryHeader", Bool),
    f("allowedhosts", "allowedHosts", List),
    f("hostsproxyheaders", "hostsProxyHeaders", List),
    f("sslproxyheaders", "sslProxyHeaders", Map),
    f("stsseconds", "stsSeconds", Int),
    f("stsincludesubdomains", "stsIncludeSubdomains", Bool),
    f("stspreload", "stsPreload", Bool),
    f("forcestsheader", "forceSTSHeader", Bool),
    f("framedeny", "frameDeny", Bool),
    f("customframeoptionsvalue", "customFrameOptionsValue", Str),
    f("contenttypenosniff", "contentTypeNosniff", Bool),
    f("browserxssfilter", "browserXssFilter", Bool),
    f("custombrowserxssvalue", "customBrowserXSSValue", Str),
    f("contentsecuritypolicy", "contentSecurityPolicy", Str),
    v3(
        "contentsecuritypolicyreportonly",
        "contentSecurityPolicyReportOnly",
        Str,
    ),
    f("publickey", "publicKey", Str),
    f("referrerpolicy", "referrerPolicy", Str),
    f("permissionspolicy", "permissionsPolicy", Str),
    f("isdevelopment", "isDevelopment", Bool),
    // Deprecated in v2, removed in v3 (redirections belong to redirectScheme there).
    v2("sslredirect", "sslRedirect", Bool),
    v2("ssltemporaryredirect", "sslTemporaryRedirect", Bool),
    v2("sslhost", "sslHost", Str),
    v2("sslforcehost", "sslForceHost", Bool),
    v2("featurepolicy", "featurePolicy", Str),
];

const REDIRECT_SCHEME: &[Field] = &[
    f("scheme", "scheme", Str),
    f("port", "port", Str),
    f("permanent", "permanent", Bool),
];

const BASIC_AUTH: &[Field] = &[
    f("users", "users", List),
    f("usersfile", "usersFile", Str),
    f("realm", "realm", Str),
    f("headerfield", "headerField", Str),
    f("removeheader", "removeHeader", Bool),
];

const RATE_LIMIT: &[Field] = &[
    f("average", "average", Int),
    f("period", "period", Duration),
    f("burst", "burst", Int),
    f("sourcecriterion", "sourceCriterion", Obj(SOURCE_CRITERION)),
];

const IP_ALLOW_LIST: &[Field] = &[
    f("sourcerange", "sourceRange", List),
    f("ipstrategy", "ipStrategy", Flag(IP_STRATEGY)),
    v3("rejectstatuscode", "rejectStatusCode", Int),
];

const IP_WHITE_LIST: &[Field] = &[
    f("sourcerange", "sourceRange", List),
    f("ipstrategy", "ipStrategy", Flag(IP_STRATEGY)),
];

const COMPRESS: &[Field] = &[
    f("excludedcontenttypes", "excludedContentTypes", List),
    v3("includedcontenttypes", "includedContentTypes", List),
    f("minresponsebodybytes", "minResponseBodyBytes", Int),
    v3("encodings", "encodings", List),
    v3("defaultencoding", "defaultEncoding", Str),
];

const RETRY: &[Field] = &[
    f("attempts", "attempts", Int),
    f("initialinterval", "initialInterval", Duration),
];

const CHAIN: &[Field] = &[f("middlewares", "middlewares", List)];

/// The middleware types; a middleware names exactly one of them.
pub const HTTP_MIDDLEWARE: &[Field] = &[
    f("stripprefix", "stripPrefix", Obj(STRIP_PREFIX)),
    f("addprefix", "addPrefix", Obj(ADD_PREFIX)),
    f("headers", "headers", Obj(HEADERS)),
    f("redirectscheme", "redirectScheme", Obj(REDIRECT_SCHEME)),
    f("basicauth", "basicAuth", Obj(BASIC_AUTH)),
    f("ratelimit", "rateLimit", Obj(RATE_LIMIT)),
    f("ipallowlist", "ipAllowList", Obj(IP_ALLOW_LIST)),
    // Still read by v3 (with a deprecation warning); v2.11 configurations use it widely.
    f("ipwhitelist", "ipWhiteList", Obj(IP_WHITE_LIST)),
    f("compress", "compress", Flag(COMPRESS)),
    f("retry", "retry", Obj(RETRY)),
    f("chain", "chain", Obj(CHAIN)),
];

const TCP_ROUTER_TLS: &[Field] = &[
    f("passthrough", "passthrough", Bool),
    f("certresolver", "certResolver", Str),
    f("options", "options", Str),
    f("domains", "domains", Indexed(TLS_DOMAIN)),
];

pub const TCP_ROUTER: &[Field] = &[
    f("rule", "rule", Str),
    v3("rulesyntax", "ruleSyntax", Str),
    f("service", "service", Str),
    f("entrypoints", "entryPoints", List),
    f("middlewares", "middlewares", List),
    f("priority", "priority", Int),
    f("tls", "tls", Flag(TCP_ROUTER_TLS)),
];

pub const TCP_SERVER: &[Field] = &[f("port", "port", Int), v3("tls", "tls", Bool)];

const PROXY_PROTOCOL: &[Field] = &[f("version", "version", Int)];

const TCP_LOAD_BALANCER: &[Field] = &[
    f("server", "server", Obj(TCP_SERVER)),
    f("proxyprotocol", "proxyProtocol", Obj(PROXY_PROTOCOL)),
    f("terminationdelay", "terminationDelay", Int),
    v3("serverstransport", "serversTransport", Str),
];

pub const TCP_SERVICE: &[Field] = &[f("loadbalancer", "loadBalancer", Obj(TCP_LOAD_BALANCER))];

pub const UDP_ROUTER: &[Field] = &[
    f("service", "service", Str),
    f("entrypoints", "entryPoints", List),
];

pub const UDP_SERVER: &[Field] = &[f("port", "port", Int)];

const UDP_LOAD_BALANCER: &[Field] = &[f("server", "server", Obj(UDP_SERVER))];

pub const UDP_SERVICE: &[Field] = &[f("loadbalancer", "loadBalancer", Obj(UDP_LOAD_BALANCER))];

/// Keys whose objects Traefik accepts empty; everything else is left out when empty.
pub fn may_be_empty(json_key: &str) -> bool {
    matches!(
        json_key,
        "tls" | "sticky" | "cookie" | "compress" | "ipStrategy"
    )
}
