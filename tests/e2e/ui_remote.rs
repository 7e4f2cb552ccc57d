//! The console (`convirt ui`) with a managed server (issue #20): provisioning from the
//! browser's form to a `[hosts.NAME]` target over the real OpenSSH (the private sshd of
//! `remote.rs`), the run watched to its end, the VM on the VMs page with its host and the
//! server's `xl list` state (a stand-in xl on the server), Start and Remove there. Plain
//! HTTP requests with the token, the session cookie, the CSRF token and the Origin, as a
//! browser sends them.

use super::remote::{World, free_port, text};
use super::remote_records::xl_stand_in;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// A running `convirt ui`, logged in.
pub struct Console {
    child: Child,
    _out: BufReader<std::process::ChildStdout>,
    addr: String,
    cookie: String,
    csrf: String,
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Console {
    pub fn start(w: &World) -> Console {
        let mut child = w
            .cmd(&["ui", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in `{line}`"))
            .trim_start_matches("http://")
            .to_string();
        let (addr, q) = url.split_once('/').unwrap();
        let mut c = Console {
            child,
            _out: out,
            addr: addr.to_string(),
            cookie: String::new(),
            csrf: String::new(),
        };
        let r = c.raw("GET", &format!("/{q}"), &[], "");
        assert_eq!(r.status, 303, "{}", r.head);
        c.cookie = r
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let page = c.get("/");
        c.csrf = page
            .body
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        c
    }

    fn raw(&self, method: &str, path: &str, headers: &[(&str, String)], body: &str) -> Resp {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        // Generous: a page may wait for the server's answer, a run's stream for its end.
        s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nConnection: close\r\nHost: {}\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let t = String::from_utf8_lossy(&out).to_string();
        let (head, body) = t.split_once("\r\n\r\n").unwrap_or((&t, ""));
        Resp {
            status: head.split_whitespace().nth(1).unwrap().parse().unwrap(),
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.raw("GET", path, &[("Cookie", self.cookie.clone())], "")
    }

    /// A form post as the browser sends it: cookie, Origin, CSRF field.
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        let body = all
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let h = vec![
            ("Cookie", self.cookie.clone()),
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("Origin", format!("http://{}", self.addr)),
        ];
        self.raw("POST", path, &h, &body)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The VMs page's row of `vm`, if it is listed.
fn row(page: &str, vm: &str) -> Option<String> {
    let r = page.split(&format!("<th scope=\"row\">{vm}</th>")).nth(1)?;
    Some(r.split("</tr>").next()?.to_string())
}

/// `vm list --json`'s `state` of `vm`.
fn listed_state(w: &World, vm: &str) -> serde_json::Value {
    let list = w.json_list();
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == vm)
        .unwrap_or_else(|| panic!("{vm} not in {list}"))["state"]
        .clone()
}

#[test]
fn provisions_on_a_managed_server_from_the_console_and_removes_it_there() {
    let xl = tempfile::tempdir().unwrap();
    let bin = xl_stand_in(xl.path());
    let w = World::new_with(
        1,
        None,
        &format!(
            "SetEnv PATH={}:/usr/sbin:/usr/bin:/sbin:/bin\n",
            bin.display()
        ),
    );
    let srv = w.srv(0);
    let c = Console::start(&w);
    let form = c.get("/images/Linux_CD_Install/provision");
    assert!(
        form.body.contains("<option value=\"srv0\""),
        "{}",
        form.body
    );
    let r = c.post(
        "/images/Linux_CD_Install/provision",
        &[
            ("vms", "u1"),
            ("target", "srv0"),
            ("img:hda_disk_size", "16"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let run = r.header("location").unwrap();
    // The run's stream ends when the run does.
    let events = c.get(&format!("{run}/events"));
    assert!(events.body.contains("event: end"), "{}", events.body);
    assert!(
        events.body.contains("\"vm\":\"u1\",\"kind\":\"done\""),
        "{}",
        events.body
    );
    let (cfg, disk) = (srv.join("xen/u1.cfg"), srv.join("disks/u1.disk.xm"));
    assert!(cfg.exists() && disk.exists());
    let record = w.local().join("state/hosts/srv0/u1");
    assert!(record.join("record.json").exists());
    // Nothing of it on this machine but the record and the log's copy.
    assert!(!w.local().join("xen/u1.cfg").exists());

    // The VMs page: the VM with its host, the server's `xl list` state, its disk there.
    let vms = c.get("/vms");
    let u1 = row(&vms.body, "u1").unwrap_or_else(|| panic!("{}", vms.body));
    assert!(u1.contains("<td>srv0</td>"), "{u1}");
    assert!(u1.contains("<td>off</td>"), "{u1}");
    assert!(u1.contains("<td>1/1 present</td>"), "{u1}");
    assert!(u1.contains(">Start<"), "{u1}");
    assert_eq!(listed_state(&w, "u1"), "off");

    // Running there: shown running, no Start, and Remove refused with nothing touched.
    std::fs::write(xl.path().join("running"), "u1\n").unwrap();
    let u1 = row(&c.get("/vms").body, "u1").unwrap();
    assert!(u1.contains("<td>running</td>"), "{u1}");
    assert!(!u1.contains(">Start<"), "{u1}");
    assert_eq!(listed_state(&w, "u1"), "running");
    let plan = c.get("/vms/srv0/u1/remove");
    assert_eq!(plan.status, 409, "{}", plan.body);
    assert!(
        plan.body.contains("it is running on `srv0`"),
        "{}",
        plan.body
    );
    assert!(!plan.body.contains("class=\"danger\""), "{}", plan.body);
    let refused = c.post("/vms/srv0/u1/remove", &[]);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(cfg.exists() && disk.exists() && record.exists());

    // Stopped: Start runs `xl create` there with the config of the server's record.
    std::fs::write(xl.path().join("running"), "").unwrap();
    let started = c.post("/vms/srv0/u1/start", &[]);
    assert_eq!(started.status, 200, "{}", started.body);
    assert!(
        started.body.contains("started `u1` on `srv0`"),
        "{}",
        started.body
    );
    assert_eq!(
        std::fs::read_to_string(xl.path().join("created")).unwrap(),
        format!("{}\n", cfg.display())
    );

    // (Its record, kept aside for a server that does not answer, below.)
    let kept = xl.path().join("u1-record");
    super::remote::sh(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&record)
            .arg(&kept),
    );

    // Remove shows exactly what goes, with the host of each item, then removes it there.
    let plan = c.get("/vms/srv0/u1/remove");
    assert_eq!(plan.status, 200, "{}", plan.body);
    for p in [&cfg, &disk] {
        assert!(
            plan.body
                .contains(&format!("<td>srv0</td><td><code>{}</code>", p.display())),
            "{}",
            plan.body
        );
    }
    assert!(cfg.exists() && disk.exists(), "the plan removed nothing");
    let gone = c.post("/vms/srv0/u1/remove", &[]);
    assert_eq!(gone.status, 303, "{}", gone.body);
    assert!(!cfg.exists() && !disk.exists());
    assert!(!record.exists());
    assert!(row(&c.get("/vms").body, "u1").is_none());
    let list = w.run(&["vm", "list"]);
    assert!(!text(&list.stdout).contains("u1"), "{}", text(&list.stdout));
    assert!(!srv.join("state/vms/u1").exists());

    // A server that does not answer: its VM is listed with state `-` and why, never guessed.
    w.add_settings(&format!(
        "[hosts.srv9]\naddress = '127.0.0.1'\nport = {}\nuser = 'root'\n",
        free_port()
    ));
    std::fs::create_dir_all(w.local().join("state/hosts/srv9")).unwrap();
    std::fs::rename(&kept, w.local().join("state/hosts/srv9/u1")).unwrap();
    let c = Console::start(&w);
    let vms = c.get("/vms");
    let u1 = row(&vms.body, "u1").unwrap_or_else(|| panic!("{}", vms.body));
    assert!(
        u1.contains("<td>srv9</td><td>provisioned</td><td>-</td>"),
        "{u1}"
    );
    assert!(u1.contains("not checked"), "{u1}");
    assert!(vms.body.contains("srv9: no answer"), "{}", vms.body);
    assert_eq!(listed_state(&w, "u1"), serde_json::Value::Null);
}
