//! Downloads for `image search` and `image pull` (docs/sharing.md): `https://` anywhere,
//! `http://` only to the loopback addresses `127.0.0.1` and `[::1]`, and `file://`. Redirects
//! are followed by hand, only within the same scheme, host and port; every download is
//! bounded (a size the caller knows), and a server that sends nothing for the read timeout
//! ends the download.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;
/// The connect and per-read timeout when `CONVIRT_HTTP_TIMEOUT` is not set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a URL points, once it passed the scheme rules.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Http { scheme: String, authority: String },
    File(PathBuf),
}

/// Checks a source URL against the rules above; the error says which rule it breaks.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    target(url).map(|_| ())
}

fn target(url: &str) -> Result<Target, String> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "`{url}`: a file URL needs an absolute path (`file:///...`)"
            ));
        }
        return Ok(Target::File(PathBuf::from(path)));
    }
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if url.contains(['?', '#']) {
        return Err(format!("`{url}`: a source URL has no query or fragment"));
    }
    match scheme.as_str() {
        "https" => {}
        "http" if host == "127.0.0.1" || host == "[::1]" || host == "::1" => {}
        "http" => {
            return Err(format!(
                "`{url}`: plain http is allowed only to 127.0.0.1 and [::1]; use https"
            ));
        }
        _ => {
            return Err(format!(
                "`{url}`: convirt downloads over https (http only from 127.0.0.1 and [::1], or file://)"
            ));
        }
    }
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_ascii_lowercase())
        .unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "`{url}`: user names and passwords in URLs are not supported"
        ));
    }
    Ok(Target::Http { scheme, authority })
}

/// `base` (a directory URL) joined with a plain file name.
pub(crate) fn join(base: &str, name: &str) -> String {
    format!("{}/{name}", base.trim_end_matches('/'))
}

/// Where a redirect's `Location` points, from the URL that answered.
fn resolve_location(current: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let after_scheme = current.find("://").map_or(0, |i| i + 3);
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{}{rest}", &current[..after_scheme]);
    }
    if location.starts_with('/') {
        let end = current[after_scheme..]
            .find('/')
            .map_or(current.len(), |i| after_scheme + i);
        return format!("{}{location}", &current[..end]);
    }
    let dir_end = current.rfind('/').map_or(current.len(), |i| i + 1);
    format!("{}{location}", &current[..dir_end])
}

/// The HTTP client: one agent, its timeouts from `CONVIRT_HTTP_TIMEOUT` (seconds) or 30 s.
pub(crate) struct Client {
    agent: ureq::Agent,
    timeout: Duration,
}

impl Client {
    pub(crate) fn new() -> Result<Client, String> {
        let timeout = match std::env::var("CONVIRT_HTTP_TIMEOUT") {
            Ok(v) if !v.is_empty() => {
                let secs: f64 = v.trim().parse().map_err(|_| {
                    format!("CONVIRT_HTTP_TIMEOUT=`{v}` is not a number of seconds")
                })?;
                if !(secs > 0.0 && secs <= 86_400.0) {
                    return Err(format!(
                        "CONVIRT_HTTP_TIMEOUT=`{v}` must be more than 0 and at most 86400 seconds"
                    ));
                }
                Duration::from_secs_f64(secs)
            }
            _ => DEFAULT_TIMEOUT,
        };
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .user_agent(concat!("convirt/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Client { agent, timeout })
    }

    /// Downloads `url` into `out`, at most `max` bytes (more is an error naming `max`); with
    /// `exact`, anything but exactly `max` bytes is an error. `progress` is told the bytes
    /// so far. Returns the byte count.
    pub(crate) fn get(
        &self,
        url: &str,
        max: u64,
        exact: bool,
        out: &mut dyn Write,
        progress: &dyn Fn(u64) -> Result<(), String>,
    ) -> Result<u64, String> {
        let origin = target(url)?;
        if let Target::File(path) = &origin {
            let f = std::fs::File::open(path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            return copy_bounded(f, max, exact, out, progress, self.timeout);
        }
        let mut current = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let resp = self
                .agent
                .get(&current)
                .call()
                .map_err(|e| self.describe(&current, &e))?;
            let status = resp.status();
            if status.is_redirection() {
                let loc = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("`{current}` redirects without a Location"))?;
                let next = resolve_location(&current, loc);
                match target(&next) {
                    Ok(t) if t == origin => {}
                    _ => {
                        return Err(format!(
                            "`{current}` redirects to `{next}`, another host or scheme; convirt follows redirects only within the same host"
                        ));
                    }
                }
                current = next;
                continue;
            }
            if !status.is_success() {
                return Err(format!("`{current}`: the server answered {status}"));
            }
            let length = resp
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(len) = length {
                if len > max {
                    return Err(too_big(max));
                }
            }
            let reader = resp.into_body().into_reader();
            return copy_bounded(reader, max, exact, out, progress, self.timeout)
                .map_err(|e| format!("`{current}`: {e}"));
        }
        Err(format!("`{url}`: more than {MAX_REDIRECTS} redirects"))
    }

    fn describe(&self, url: &str, e: &ureq::Error) -> String {
        match e {
            ureq::Error::Timeout(_) => format!(
                "`{url}`: no answer within {} s (the server stalled)",
                self.timeout.as_secs_f64()
            ),
            e => format!("cannot download `{url}`: {e}"),
        }
    }
}

fn too_big(max: u64) -> String {
    format!("the download is larger than the {max} bytes expected; refused")
}

fn copy_bounded(
    reader: impl Read,
    max: u64,
    exact: bool,
    out: &mut dyn Write,
    progress: &dyn Fn(u64) -> Result<(), String>,
    timeout: Duration,
) -> Result<u64, String> {
    let mut reader = reader.take(max.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    let mut n: u64 = 0;
    loop {
        let got = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(g) => g,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                // A signal: the caller's check says whether to stop (Ctrl-C) or go on.
                progress(n)?;
                continue;
            }
            Err(e) if is_timeout(&e) => {
                return Err(format!(
                    "the server stalled: nothing received for {} s after {n} bytes",
                    timeout.as_secs_f64()
                ));
            }
            Err(e) => return Err(format!("the download broke off after {n} bytes: {e}")),
        };
        n += got as u64;
        if n > max {
            return Err(too_big(max));
        }
        out.write_all(&buf[..got])
            .map_err(|e| format!("cannot write the download: {e}"))?;
        progress(n)?;
    }
    if exact && n != max {
        return Err(format!(
            "the download ended after {n} bytes, {max} were expected"
        ));
    }
    Ok(n)
}

fn is_timeout(e: &std::io::Error) -> bool {
    if matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) {
        return true;
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        assert!(check_url("https://images.example.org/convirt").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("http://[::1]:8080/x").is_ok());
        assert!(check_url("file:///srv/images").is_ok());
        for bad in [
            "http://example.org/x",
            "http://localhost/x",
            "ftp://127.0.0.1/x",
            "file://relative",
            "https://user:pw@example.org/",
            "https://example.org/x?y",
            "nonsense",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_targets() {
        let c = "http://127.0.0.1:80/a/index.json";
        assert_eq!(resolve_location(c, "/b/i"), "http://127.0.0.1:80/b/i");
        assert_eq!(resolve_location(c, "i2"), "http://127.0.0.1:80/a/i2");
        assert_eq!(
            resolve_location(c, "http://127.0.0.2/x"),
            "http://127.0.0.2/x"
        );
        assert_eq!(resolve_location(c, "//h/x"), "http://h/x");
        assert_ne!(
            target("http://127.0.0.1:80/x").unwrap(),
            target("http://127.0.0.1:81/x").unwrap()
        );
    }
}
