//! The console's web defences (docs/security.md, "Web console"): a random access token in the
//! printed URL, traded once for an HttpOnly SameSite=Strict session cookie; a Host check
//! against DNS rebinding; on every state-changing request a matching Origin and the CSRF
//! token; a strict Content-Security-Policy and no-store on every response.

use super::{Shared, html};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// The policy: scripts and styles from this server only (no inline script, no inline
/// style), no plugins, no framing, forms post back here only.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The largest form body read for its CSRF field (uploads carry the token in a header).
const FORM_LIMIT: usize = 1 << 20;

pub(crate) struct Secrets {
    /// In the printed URL.
    pub token: String,
    /// The cookie's value.
    session: String,
    /// In every form and in a `<meta>` for the script.
    pub csrf: String,
    pub cookie_name: String,
    /// `Host` values this server answers to; any with TLS (a rebound name fails the
    /// certificate check).
    hosts: Option<Vec<String>>,
    /// `http` or `https`.
    pub scheme: &'static str,
}

fn random_hex() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    crate::sys::fill_random(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Secrets {
    pub(crate) fn new(addr: SocketAddr, tls: bool) -> std::io::Result<Secrets> {
        let mut hosts = vec![addr.to_string()];
        if addr.ip().is_loopback() {
            hosts.push(format!("localhost:{}", addr.port()));
        }
        let hosts = (!tls).then_some(hosts);
        Ok(Secrets {
            token: random_hex()?,
            session: random_hex()?,
            csrf: random_hex()?,
            // Cookies are not kept apart by port: two consoles must not share one name.
            cookie_name: format!("convirt_session_{}", addr.port()),
            hosts,
            scheme: if tls { "https" } else { "http" },
        })
    }

    fn has_session(&self, req: &Request) -> bool {
        req.headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(k, v)| k == self.cookie_name && same(v, &self.session))
    }
}

/// The token of `?token=...`, if the query has one.
fn query_token(req: &Request) -> Option<String> {
    let q = req.uri().query()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

fn refuse(status: StatusCode, why: &str) -> Response {
    html::error_page(status, why)
}

/// The middleware in front of every route.
pub(crate) async fn guard(State(ui): State<Shared>, req: Request, next: Next) -> Response {
    let mut res = check(&ui, req, next).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn check(ui: &Shared, req: Request, next: Next) -> Response {
    let s = &ui.secrets;
    // DNS rebinding: a page of another site that resolves its name to 127.0.0.1 sends its
    // own Host.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if host.is_empty()
        || s.hosts
            .as_ref()
            .is_some_and(|hs| !hs.iter().any(|h| h == &host))
    {
        return refuse(StatusCode::MISDIRECTED_REQUEST, "unknown Host");
    }
    if let Some(t) = query_token(&req) {
        if !same(&t, &s.token) {
            return refuse(StatusCode::UNAUTHORIZED, "wrong access token");
        }
        // The token leaves the address bar at once; the cookie carries the session.
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/{}",
            s.cookie_name,
            s.session,
            if s.scheme == "https" { "; Secure" } else { "" }
        );
        let mut res = (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, req.uri().path().to_string())],
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
        return res;
    }
    if !s.has_session(&req) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "not signed in: open the URL that `convirt ui` printed (it carries the access token)",
        );
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if origin != format!("{}://{host}", s.scheme) {
        return refuse(
            StatusCode::FORBIDDEN,
            "refused: the request's Origin is not this console",
        );
    }
    let from_header = req
        .headers()
        .get("x-csrf-token")
        .and_then(|h| h.to_str().ok())
        .map(String::from);
    if let Some(t) = from_header {
        if same(&t, &s.csrf) {
            return next.run(req).await;
        }
        return refuse(StatusCode::FORBIDDEN, "refused: wrong CSRF token");
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return refuse(StatusCode::FORBIDDEN, "refused: no CSRF token");
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large");
    };
    let ok = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .map(|f| f.iter().any(|(k, v)| k == "csrf" && same(v, &s.csrf)))
        .unwrap_or(false);
    if !ok {
        return refuse(StatusCode::FORBIDDEN, "refused: wrong CSRF token");
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Keeps description.htm's small markup (spans, lists, emphasis, line breaks, links) and
/// drops the rest: scripts, event handlers, styles, forms, images and every other external
/// resource, and any link scheme but http(s) and mailto.
pub(crate) fn sanitise(html: &str) -> String {
    let tags: std::collections::HashSet<&str> = [
        "a",
        "b",
        "i",
        "u",
        "em",
        "strong",
        "p",
        "br",
        "span",
        "div",
        "ul",
        "ol",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "pre",
        "code",
        "tt",
        "font",
        "table",
        "tr",
        "td",
        "th",
        "tbody",
        "thead",
        "hr",
        "small",
        "big",
        "sub",
        "sup",
        "blockquote",
        "dl",
        "dt",
        "dd",
    ]
    .into_iter()
    .collect();
    let schemes: std::collections::HashSet<&str> =
        ["http", "https", "mailto"].into_iter().collect();
    ammonia::Builder::default()
        .tags(tags)
        .allowed_classes(std::collections::HashMap::from([(
            "span",
            std::collections::HashSet::from(["d-title", "d-head", "d-em", "d-strong"]),
        )]))
        .generic_attributes(std::collections::HashSet::new())
        .tag_attributes(std::collections::HashMap::from([(
            "a",
            std::collections::HashSet::from(["href"]),
        )]))
        .url_schemes(schemes)
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&styles_to_classes(html))
        .to_string()
}

/// The shipped descriptions' look comes from `style` attributes, which the CSP would block:
/// the few they use become classes of the console's stylesheet.
fn styles_to_classes(html: &str) -> String {
    static STYLE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"(?i)\sstyle\s*=\s*"([^"]*)""#).unwrap_or_else(|_| unreachable!())
    });
    STYLE
        .replace_all(html, |c: &regex::Captures<'_>| {
            let st = c[1].to_ascii_lowercase().replace(' ', "");
            let class = if st.contains("font-size:200%") {
                "d-title"
            } else if st.contains("font-size:125%") {
                "d-head"
            } else if st.contains("italic") {
                "d-em"
            } else if st.contains("bold") {
                "d-strong"
            } else {
                return String::new();
            };
            format!(" class=\"{class}\"")
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sanitiser_drops_script_handlers_and_javascript_links() {
        let out = sanitise(
            "<b>ok</b><script>document.title='x'</script><img src=x onerror=alert(1)>\
             <a href=\"javascript:alert(1)\">j</a><a href=\"https://example.org/\">e</a>\
             <form action=/x><input name=a></form><span style=\"color:red\" onclick=\"x()\">s</span>",
        );
        assert!(out.contains("<b>ok</b>"), "{out}");
        for bad in [
            "script",
            "onerror",
            "javascript",
            "<img",
            "<form",
            "<input",
            "onclick",
            "style",
        ] {
            assert!(!out.contains(bad), "`{bad}` left in {out}");
        }
        assert!(out.contains("href=\"https://example.org/\""), "{out}");
    }

    #[test]
    fn equal_secrets_only() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
