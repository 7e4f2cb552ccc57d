//! `convirt ui` over real HTTP (a small std client): the access token and the session
//! cookie, CSRF and Origin on state-changing requests, the Host check, the CSP header, the
//! description sanitiser, Edit Settings (customizable only, comments kept), provisioning
//! runs streamed over SSE and the lock two runs of one name meet, Ctrl-C.

use crate::provision::{probe, sandbox};
use crate::{World, provision_script};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

struct Console {
    child: Child,
    /// Kept open: the console's stdout.
    _out: BufReader<std::process::ChildStdout>,
    addr: String,
    token: String,
    cookie: String,
    csrf: String,
}

impl Console {
    /// Starts `convirt ui` on a free port of 127.0.0.1 with the world's sandbox settings.
    fn start(w: &World) -> Console {
        Console::start_with(w, None)
    }

    /// With `bin` first on PATH (a stand-in `xl`).
    fn start_with(w: &World, bin: Option<&std::path::Path>) -> Console {
        let mut cmd = w.conv_cmd(&["ui", "--listen", "127.0.0.1:0"]);
        if let Some(b) = bin {
            cmd.env(
                "PATH",
                format!(
                    "{}:{}",
                    b.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            );
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in `{line}`"))
            .to_string();
        let rest = url.trim_start_matches("http://");
        let (addr, q) = rest.split_once('/').unwrap();
        let token = q.trim_start_matches("?token=").to_string();
        Console {
            child,
            _out: out,
            addr: addr.to_string(),
            token,
            cookie: String::new(),
            csrf: String::new(),
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn raw(&self, method: &str, path: &str, headers: &[(&str, String)], body: &str) -> Resp {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        Resp {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    /// Trades the token for the cookie, and reads the CSRF token off a page.
    fn login(&mut self) {
        let r = self.raw("GET", &format!("/?token={}", self.token), &[], "");
        assert_eq!(r.status, 303, "{}", r.head);
        let c = r.header("set-cookie").unwrap();
        self.cookie = c.split(';').next().unwrap().to_string();
        let page = self.get("/");
        assert_eq!(page.status, 200);
        let m = page
            .body
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .unwrap();
        self.csrf = m.split('"').next().unwrap().to_string();
    }

    fn get(&self, path: &str) -> Resp {
        self.raw("GET", path, &[("Cookie", self.cookie.clone())], "")
    }

    /// A form post as the browser sends it: cookie, Origin, CSRF field.
    fn post(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let mut all: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        all.extend_from_slice(fields);
        self.post_raw(path, &all, Some(self.origin()))
    }

    fn post_raw(&self, path: &str, fields: &[(&str, &str)], origin: Option<String>) -> Resp {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut h = vec![
            ("Cookie", self.cookie.clone()),
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            ),
        ];
        if let Some(o) = origin {
            h.push(("Origin", o));
        }
        self.raw("POST", path, &h, &body)
    }

    /// Ctrl-C; the exit status and stderr.
    fn stop(mut self) -> (Option<i32>, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child_wait()
    }

    fn child_wait(&mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    e.read_to_string(&mut err).unwrap();
                }
                return (st.code(), err);
            }
            assert!(
                Instant::now() < deadline,
                "convirt ui did not stop on Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn image(w: &World, name: &str, image_conf: &str, description: &str) {
    w.write(&format!("store/{name}/image.conf"), image_conf);
    w.write(
        &format!("store/{name}/vm_conf.template"),
        "name = ''\nmemory = 256\n# the console\nextra = 'console=hvc0'\n",
    );
    w.write_exec(
        &format!("store/{name}/provision.sh"),
        "#!/bin/bash\nexit 0\n",
    );
    w.write(&format!("store/{name}/description.htm"), description);
}

fn world() -> World {
    let w = sandbox();
    image(
        &w,
        "Plain",
        "# disk size in MB\nhda_disk_size = 1000  # keep me\nother = 1\ncustomizable_options = ['hda_disk_size']\n",
        "<body><span style=\"font-size: 200%\">Plain image</span><br/>About <i>Plain</i>.</body>",
    );
    w
}

#[test]
fn the_token_becomes_an_httponly_strict_cookie_and_leaves_the_address_bar() {
    let w = world();
    let mut c = Console::start(&w);
    let r = c.raw("GET", &format!("/images/Plain?token={}", c.token), &[], "");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location").as_deref(), Some("/images/Plain"));
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        !cookie.contains(&c.token),
        "the cookie is not the token: {cookie}"
    );
    c.login();
    let page = c.get("/images/Plain");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Plain image"), "{}", page.body);
}

#[test]
fn without_the_token_or_with_a_wrong_one_nothing_is_shown() {
    let w = world();
    let c = Console::start(&w);
    for path in ["/", "/images/Plain", "/vms", "/static/app.js"] {
        let r = c.raw("GET", path, &[], "");
        assert_eq!(r.status, 401, "{path}");
        assert!(!r.body.contains("Plain"), "{path}: {}", r.body);
    }
    let wrong = c.raw("GET", "/?token=0000", &[], "");
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    let forged = c.raw(
        "GET",
        "/",
        &[(
            "Cookie",
            format!("convirt_session_{}=abc", c.addr.rsplit(':').next().unwrap()),
        )],
        "",
    );
    assert_eq!(forged.status, 401);
}

#[test]
fn every_response_carries_a_strict_csp_and_pages_have_no_inline_script() {
    let w = world();
    let mut c = Console::start(&w);
    c.login();
    for path in ["/", "/images/Plain", "/images/Plain/edit", "/vms", "/nope"] {
        let r = c.get(path);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        for s in r.body.split("<script").skip(1) {
            assert!(
                s.starts_with(" src=\"/static/"),
                "{path}: inline script {s}"
            );
        }
    }
    assert!(
        c.raw("GET", "/", &[], "")
            .header("content-security-policy")
            .is_some()
    );
}

#[test]
fn state_changing_requests_need_the_csrf_token_and_this_origin() {
    let w = world();
    let mut c = Console::start(&w);
    c.login();
    let like = "/images/Plain/create-like";
    let origin = Some(c.origin());
    let cases: Vec<(&str, Resp)> = vec![
        (
            "no CSRF token",
            c.post_raw(like, &[("new", "Copy")], origin.clone()),
        ),
        (
            "a wrong CSRF token",
            c.post_raw(like, &[("csrf", "ab12"), ("new", "Copy")], origin.clone()),
        ),
        (
            "another Origin",
            c.post_raw(
                like,
                &[("csrf", &c.csrf), ("new", "Copy")],
                Some("http://evil.example".into()),
            ),
        ),
        (
            "no Origin",
            c.post_raw(like, &[("csrf", &c.csrf), ("new", "Copy")], None),
        ),
        (
            "no cookie",
            c.raw(
                "POST",
                like,
                &[
                    ("Origin", c.origin()),
                    ("Content-Type", "application/x-www-form-urlencoded".into()),
                ],
                &format!("csrf={}&new=Copy", c.csrf),
            ),
        ),
        (
            "another Host (DNS rebinding)",
            c.raw(
                "POST",
                like,
                &[
                    ("Host", "evil.example".into()),
                    ("Origin", "http://evil.example".into()),
                    ("Cookie", c.cookie.clone()),
                    ("Content-Type", "application/x-www-form-urlencoded".into()),
                ],
                &format!("csrf={}&new=Copy", c.csrf),
            ),
        ),
    ];
    for (what, r) in cases {
        assert!(
            matches!(r.status, 401 | 403 | 421),
            "{what}: {} {}",
            r.status,
            r.body
        );
        assert!(
            !w.store().join("Copy").exists(),
            "{what}: the image was made"
        );
    }
    let ok = c.post(like, &[("new", "Copy"), ("title", "A copy")]);
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert!(w.store().join("Copy/image.conf").exists());
    let page = c.get("/images/Copy");
    assert!(page.body.contains("A copy"), "{}", page.body);
}

#[test]
fn a_hostile_description_is_sanitised() {
    let w = world();
    image(
        &w,
        "Hostile",
        "x = 1\n",
        "<body><span>Hostile</span><script>document.title='PWNED-1'</script>\
<img src=x onerror=\"document.title='PWNED-2'\"><a href=\"javascript:document.title='PWNED-3'\">click</a>\
<a href=\"https://example.org/doc\">doc</a><form action=\"/x\"><input name=q></form>\
<iframe src=\"https://example.org/\"></iframe><link rel=stylesheet href=\"https://example.org/s.css\"></body>",
    );
    let mut c = Console::start(&w);
    c.login();
    let r = c.get("/images/Hostile");
    assert_eq!(r.status, 200);
    let desc = r
        .body
        .split("class=\"description\"")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    for bad in [
        "PWNED",
        "<script",
        "onerror",
        "javascript:",
        "<img",
        "<form",
        "<input",
        "<iframe",
        "<link",
    ] {
        assert!(!desc.contains(bad), "`{bad}` survived: {desc}");
    }
    assert!(desc.contains("href=\"https://example.org/doc\""), "{desc}");
    assert!(desc.contains("Hostile"), "{desc}");
}

#[test]
fn edit_settings_changes_customizable_values_keeping_comments_and_refuses_the_rest() {
    let w = world();
    let mut c = Console::start(&w);
    c.login();
    let conf = w.store().join("Plain/image.conf");
    let before = std::fs::read_to_string(&conf).unwrap();
    let refused = c.post(
        "/images/Plain/edit?tab=Miscellaneous",
        &[("img:other", "2")],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("not customizable"),
        "{}",
        refused.body
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), before);
    let form = c.get("/images/Plain/edit?tab=Disks");
    assert!(
        form.body.contains("name=\"img:hda_disk_size\""),
        "{}",
        form.body
    );
    let ok = c.post(
        "/images/Plain/edit?tab=Disks",
        &[("img:hda_disk_size", "2000")],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let after = std::fs::read_to_string(&conf).unwrap();
    assert!(
        after.contains("# disk size in MB\nhda_disk_size = 2000  # keep me\n"),
        "{after}"
    );
    assert!(after.contains("other = 1\n"), "{after}");
}

/// Reads the run's SSE stream until its `end` event.
fn stream(c: &Console, run: &str) -> String {
    let r = c.get(&format!("{run}/events"));
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.body.contains("event: end"), "{}", r.body);
    r.body
}

#[test]
fn two_vms_provision_and_stream_their_logs_and_the_page_reattaches() {
    let w = sandbox();
    probe(&w, "");
    let mut c = Console::start(&w);
    c.login();
    let r = c.post(
        "/images/Probe/provision",
        &[("vms", "web1 web2"), ("target", "")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let run = r.header("location").unwrap();
    let events = stream(&c, &run);
    for vm in ["web1", "web2"] {
        assert!(
            events.contains(&format!("\"vm\":\"{vm}\",\"kind\":\"done\"")),
            "{vm}: {events}"
        );
        assert!(
            events.contains(&format!("probe: image Probe vm {vm} mode ok")),
            "{vm}: {events}"
        );
        // The page sees the batch's typed steps, in order.
        let at = |s: &str| {
            events
                .find(&format!("\"vm\":\"{vm}\",\"kind\":\"step\",\"text\":\"{s}"))
                .unwrap_or_else(|| panic!("{vm} {s}: {events}"))
        };
        assert!(at("planning") < at("taking the lock"), "{events}");
        assert!(
            at("taking the lock") < at("running provision.sh"),
            "{events}"
        );
        assert!(
            at("running provision.sh") < at("installing the config"),
            "{events}"
        );
        assert!(w.path().join(format!("conf/{vm}.cfg")).exists());
    }
    // A second stream (a reload) replays the whole run.
    assert_eq!(stream(&c, &run).matches("\"kind\":\"done\"").count(), 2);
    let vms = c.get("/vms");
    assert!(
        vms.body.contains("web1") && vms.body.contains("web2"),
        "{}",
        vms.body
    );
    // Remove shows what goes, then removes it.
    let plan = c.get("/vms/localhost/web1/remove");
    assert!(
        plan.body
            .contains(&format!("{}/disks/web1.disk", w.path().display())),
        "{}",
        plan.body
    );
    let gone = c.post("/vms/localhost/web1/remove", &[]);
    assert_eq!(gone.status, 303, "{}", gone.body);
    assert!(!w.path().join("conf/web1.cfg").exists());
    assert!(!w.path().join("disks/web1.disk").exists());
    assert!(w.path().join("conf/web2.cfg").exists());
}

#[test]
fn a_bad_value_is_shown_at_its_field_and_secrets_never_come_back() {
    let w = sandbox();
    probe(&w, "root_password = 'hunter2'\n");
    let mut c = Console::start(&w);
    c.login();
    let form = c.get("/images/Probe/provision");
    assert!(!form.body.contains("hunter2"), "{}", form.body);
    assert!(form.body.contains("type=\"password\""), "{}", form.body);
    let r = c.post(
        "/images/Probe/provision",
        &[
            ("vms", "db1"),
            ("img:xvda_disk_size", "'lots'"),
            ("img:root_password", "s3cret-typed"),
        ],
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("id=\"p-img-xvda_disk_size-err\""),
        "{}",
        r.body
    );
    assert!(!r.body.contains("s3cret-typed"), "{}", r.body);
    assert!(!w.path().join("conf/db1.cfg").exists());
}

#[test]
fn two_runs_of_one_name_meet_the_same_lock() {
    let w = sandbox();
    let p = w.path().display().to_string();
    w.write(
        "store/Slow/image.conf",
        &format!("GO = '{p}/go'\nSTARTED = '{p}/started'\n"),
    );
    w.write("store/Slow/vm_conf.template", "name = ''\nmemory = 256\n");
    w.write_exec(
        "store/Slow/provision.sh",
        &provision_script(
            true,
            "touch \"$STARTED\"\nfor _ in $(seq 1200); do [ -e \"$GO\" ] && break; sleep 0.1; done\nlog_msg \"slow done\"\n",
        ),
    );
    w.write("store/Slow/description.htm", "<body>Slow</body>");
    let mut c = Console::start(&w);
    c.login();
    let first = c.post("/images/Slow/provision", &[("vms", "same")]);
    assert_eq!(first.status, 303, "{}", first.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.path().join("started").exists() {
        assert!(Instant::now() < deadline, "the first run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = c.post("/images/Slow/provision", &[("vms", "same")]);
    assert_eq!(second.status, 303, "{}", second.body);
    let events = stream(&c, &second.header("location").unwrap());
    assert!(events.contains("\"kind\":\"failed\""), "{events}");
    assert!(events.contains("already being provisioned"), "{events}");
    std::fs::write(w.path().join("go"), "").unwrap();
    let events = stream(&c, &first.header("location").unwrap());
    assert!(events.contains("\"kind\":\"done\""), "{events}");
}

#[test]
fn ctrl_c_stops_the_console_cleanly() {
    let w = world();
    let mut c = Console::start(&w);
    c.login();
    let (code, err) = c.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("convirt console stopped"), "{err}");
}

#[test]
fn a_non_loopback_address_is_refused() {
    let w = world();
    let out = w.conv(&["ui", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without TLS: not a loopback address"), "{err}");
}

#[test]
fn pack_downloads_an_archive_that_import_uploads_into_another_store() {
    let a = world();
    let mut ca = Console::start(&a);
    ca.login();
    let mut s = TcpStream::connect(&ca.addr).unwrap();
    write!(
        s,
        "GET /images/Plain/pack HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nConnection: close\r\n\r\n",
        ca.addr, ca.cookie
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Plain.tar.gz"), "{head}");
    let archive = raw[split + 4..].to_vec();
    assert_eq!(&archive[..2], &[0x1f, 0x8b], "not gzip");

    let b = sandbox();
    let mut cb = Console::start(&b);
    cb.login();
    let upload = |headers: &[(&str, String)]| {
        let mut s = TcpStream::connect(&cb.addr).unwrap();
        let mut req = format!(
            "POST /import HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n",
            cb.addr,
            cb.cookie,
            archive.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(&archive).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let refused = upload(&[("Origin", cb.origin()), ("X-CSRF-Token", "wrong".into())]);
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(!b.store().join("Plain").exists());
    let ok = upload(&[
        ("Origin", cb.origin()),
        ("X-CSRF-Token", cb.csrf.clone()),
        ("X-Archive-Name", "Plain.tar.gz".into()),
    ]);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("imported `Plain`"), "{ok}");
    assert_eq!(
        std::fs::read_to_string(b.store().join("Plain/image.conf")).unwrap(),
        std::fs::read_to_string(a.store().join("Plain/image.conf")).unwrap()
    );
    // The same archive again: the image exists, and import does not replace it.
    let again = upload(&[
        ("Origin", cb.origin()),
        ("X-CSRF-Token", cb.csrf.clone()),
        ("X-Archive-Name", "Plain.tar.gz".into()),
    ]);
    assert!(again.starts_with("HTTP/1.1 422"), "{again}");
}

#[test]
fn a_hosts_entry_is_a_target_and_an_unreachable_one_fails_its_vms_only() {
    let w = sandbox();
    probe(&w, "customizable_options = ['mode', 'xvda_disk_size']\n");
    let cfg = w.path().join("convirt.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[hosts.xen1]\naddress = '127.0.0.1'\nport = 1\n");
    std::fs::write(&cfg, text).unwrap();
    let mut c = Console::start(&w);
    c.login();
    let form = c.get("/images/Probe/provision");
    assert!(
        form.body.contains("<option value=\"xen1\""),
        "{}",
        form.body
    );
    let bogus = c.post(
        "/images/Probe/provision",
        &[("vms", "r1"), ("target", "nowhere")],
    );
    assert_eq!(bogus.status, 422, "{}", bogus.body);
    assert!(
        bogus.body.contains("not a [hosts.*] entry"),
        "{}",
        bogus.body
    );
    // The values are checked before the run, as for this machine.
    let bad = c.post(
        "/images/Probe/provision",
        &[("vms", "r1"), ("target", "xen1"), ("img:MARK_FILE", "/x")],
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("not customizable"), "{}", bad.body);
    let r = c.post(
        "/images/Probe/provision",
        &[("vms", "r1"), ("target", "xen1")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let events = stream(&c, &r.header("location").unwrap());
    assert!(events.contains("connecting to `xen1`"), "{events}");
    assert!(
        events.contains("\"vm\":\"r1\",\"kind\":\"failed\""),
        "{events}"
    );
    assert!(!w.path().join("conf/r1.cfg").exists());
}

#[test]
fn ctrl_c_mid_run_stops_the_script_cleans_up_and_then_exits() {
    let w = sandbox();
    let p = w.path().display().to_string();
    w.write(
        "store/Slow/image.conf",
        &format!("GO = '{p}/go'\nSTARTED = '{p}/started'\nxvda_disk_create = 'yes'\nxvda_disk_size = 16\nxvda_disk_type = 'VBD'\n"),
    );
    w.write(
        "store/Slow/vm_conf.template",
        "name = ''\nmemory = 256\ndisk = ['file:$VM_DISKS_DIR/$VM_NAME.disk,xvda,w']\n",
    );
    w.write_exec(
        "store/Slow/provision.sh",
        &provision_script(
            true,
            "provision_disks\ntouch \"$STARTED\"\nfor _ in $(seq 1200); do [ -e \"$GO\" ] && break; sleep 0.1; done\n",
        ),
    );
    w.write("store/Slow/description.htm", "<body>Slow</body>");
    let mut c = Console::start(&w);
    c.login();
    let r = c.post("/images/Slow/provision", &[("vms", "stopme")]);
    assert_eq!(r.status, 303, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.path().join("started").exists() {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(w.path().join("disks/stopme.disk").exists());
    let (code, err) = c.stop();
    assert_eq!(code, Some(0), "{err}");
    // The CLI's cleanup of an interrupted run: what it created is gone.
    assert!(!w.path().join("disks/stopme.disk").exists(), "{err}");
    assert!(!w.path().join("conf/stopme.cfg").exists());
}

/// A recording stand-in for `xl` (NOT Xen): arguments appended to `xl.calls`, `list`
/// answered from `xl.domains`.
fn fake_xl(w: &World) -> std::path::PathBuf {
    let p = w.path().display().to_string();
    w.write_exec(
        "fake-bin/xl",
        &format!(
            "#!/bin/bash\n# recording stand-in for xl, for tests only\nprintf '%s\\n' \"$*\" >> '{p}/xl.calls'\nif [[ \"$1\" == list ]]; then\n  echo 'Name                                        ID   Mem VCPUs\tState\tTime(s)'\n  echo 'Domain-0                                     0  1024     2     r-----      12.3'\n  cat '{p}/xl.domains' 2>/dev/null || true\nfi\n"
        ),
    );
    w.path().join("fake-bin")
}

#[test]
fn a_running_vm_is_shown_running_and_not_removed_and_a_stopped_one_starts() {
    let w = sandbox();
    probe(&w, "");
    let bin = fake_xl(&w);
    let mut c = Console::start_with(&w, Some(&bin));
    c.login();
    let r = c.post("/images/Probe/provision", &[("vms", "web1")]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(stream(&c, &r.header("location").unwrap()).contains("\"kind\":\"done\""));
    std::fs::write(
        w.path().join("xl.domains"),
        "web1                                         7   256     1     -b----       0.4\n",
    )
    .unwrap();
    let vms = c.get("/vms");
    let row = vms
        .body
        .split("<th scope=\"row\">web1</th>")
        .nth(1)
        .unwrap();
    let row = row.split("</tr>").next().unwrap();
    assert!(row.contains("<td>running</td>"), "{row}");
    assert!(!row.contains(">Start<"), "{row}");
    let plan = c.get("/vms/localhost/web1/remove");
    assert!(
        plan.body.contains("is running (`xl list`)"),
        "{}",
        plan.body
    );
    assert!(!plan.body.contains("class=\"danger\""), "{}", plan.body);
    let refused = c.post("/vms/localhost/web1/remove", &[]);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(w.path().join("conf/web1.cfg").exists());
    assert!(w.path().join("disks/web1.disk").exists());
    // Stopped: Start runs `xl create` with the recorded config.
    std::fs::write(w.path().join("xl.domains"), "").unwrap();
    let started = c.post("/vms/localhost/web1/start", &[]);
    assert_eq!(started.status, 200, "{}", started.body);
    let calls = std::fs::read_to_string(w.path().join("xl.calls")).unwrap();
    assert!(
        calls.contains(&format!("create {}/conf/web1.cfg\n", w.path().display())),
        "{calls}"
    );
}

#[test]
fn secrets_are_never_sent_to_the_page_and_an_empty_password_field_keeps_them() {
    let w = world();
    image(
        &w,
        "Secret",
        "# the root password\nroot_password = 'hunter2'  # change me\nsize = 1\n",
        "<body>Secret</body>",
    );
    let mut c = Console::start(&w);
    c.login();
    for path in ["/images/Secret", "/images/Secret/edit?tab=Miscellaneous"] {
        let r = c.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.body.contains("hunter2"), "{path}: {}", r.body);
    }
    let form = c.get("/images/Secret/edit?tab=Miscellaneous");
    assert!(form.body.contains("type=\"password\""), "{}", form.body);
    let conf = w.store().join("Secret/image.conf");
    let r = c.post(
        "/images/Secret/edit?tab=Miscellaneous",
        &[("img:root_password", ""), ("img:size", "2")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains("root_password = 'hunter2'  # change me"),
        "{text}"
    );
    assert!(text.contains("size = 2"), "{text}");
    let r = c.post(
        "/images/Secret/edit?tab=Miscellaneous",
        &[("img:root_password", "'s3cret'")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("s3cret"), "{}", r.body);
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains("root_password = 's3cret'  # change me"),
        "{text}"
    );
}

#[test]
fn a_non_loopback_address_with_tls_files_serves_https_with_a_secure_cookie() {
    let w = world();
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(w.path().join("key.pem"))
        .arg("-out")
        .arg(w.path().join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let mut child = w
        .conv_cmd(&[
            "ui",
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("{line}"));
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    let token = url.split("?token=").nth(1).unwrap();
    let curl = |args: &[&str]| {
        let o = std::process::Command::new("curl")
            .args(["-sk", "--max-time", "60"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let head = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("https://127.0.0.1:{port}/?token={token}"),
    ]);
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie"))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let plain = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert!(!plain.contains("200 OK"), "plain HTTP answered: {plain}");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0));
}
