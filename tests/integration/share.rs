//! Sharing images (issue #21): `key generate`, `image publish` into a directory, served by a
//! real HTTP server on 127.0.0.1 started here, `image search` and `image pull` into a fresh
//! store, and the attacks, each refused with a clear error and the store unchanged.

use crate::{World, fails_saying, stderr, stdout, tree};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

/// What the server answers for one path instead of the file.
#[derive(Clone)]
enum Answer {
    /// These bytes, with a Content-Length.
    Body(Vec<u8>),
    /// These bytes, without a Content-Length (the end is the connection's close).
    Unsized(Vec<u8>),
    /// A redirect.
    Redirect(String),
    /// The headers with the full length and `sent` bytes of the file, then nothing more
    /// until the client goes away.
    Stall { body: Vec<u8>, sent: usize },
}

/// A small HTTP/1.1 server on 127.0.0.1: serves the files of `root`, or the answer set for
/// a path. One thread per connection, `Connection: close`.
struct Server {
    port: u16,
    answers: Arc<Mutex<BTreeMap<String, Answer>>>,
    root: Arc<Mutex<PathBuf>>,
}

impl Server {
    fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers: Arc<Mutex<BTreeMap<String, Answer>>> = Arc::default();
        let root = Arc::new(Mutex::new(root.to_path_buf()));
        let (a, r) = (Arc::clone(&answers), Arc::clone(&root));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (a, r) = (Arc::clone(&a), Arc::clone(&r));
                std::thread::spawn(move || serve(conn, &a, &r));
            }
        });
        Server {
            port,
            answers,
            root,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn set(&self, path: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert(path.to_string(), answer);
    }

    fn reset(&self) {
        self.answers.lock().unwrap().clear();
    }

    fn serve_dir(&self, dir: &Path) {
        *self.root.lock().unwrap() = dir.to_path_buf();
    }
}

fn serve(mut conn: TcpStream, answers: &Mutex<BTreeMap<String, Answer>>, root: &Mutex<PathBuf>) {
    let mut req = Vec::new();
    let mut b = [0u8; 1];
    while !req.ends_with(b"\r\n\r\n") {
        match conn.read(&mut b) {
            Ok(1) => req.push(b[0]),
            _ => return,
        }
    }
    let line = String::from_utf8_lossy(&req)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
    let answer = answers.lock().unwrap().get(&path).cloned();
    let root = root.lock().unwrap().clone();
    let head = |status: &str, len: Option<usize>, extra: &str| {
        let len = len
            .map(|l| format!("Content-Length: {l}\r\n"))
            .unwrap_or_default();
        format!("HTTP/1.1 {status}\r\n{len}{extra}Connection: close\r\n\r\n")
    };
    let _ = match answer {
        None => match std::fs::read(root.join(path.trim_start_matches('/'))) {
            Ok(body) => conn
                .write_all(head("200 OK", Some(body.len()), "").as_bytes())
                .and_then(|()| conn.write_all(&body)),
            Err(_) => conn.write_all(head("404 Not Found", Some(0), "").as_bytes()),
        },
        Some(Answer::Body(body)) => conn
            .write_all(head("200 OK", Some(body.len()), "").as_bytes())
            .and_then(|()| conn.write_all(&body)),
        Some(Answer::Unsized(body)) => conn
            .write_all(head("200 OK", None, "").as_bytes())
            .and_then(|()| conn.write_all(&body)),
        Some(Answer::Redirect(to)) => {
            conn.write_all(head("302 Found", Some(0), &format!("Location: {to}\r\n")).as_bytes())
        }
        Some(Answer::Stall { body, sent }) => {
            let _ = conn
                .write_all(head("200 OK", Some(body.len()), "").as_bytes())
                .and_then(|()| conn.write_all(&body[..sent]))
                .and_then(|()| conn.flush());
            // Nothing more until the client closes (read returns 0 or fails).
            let mut sink = [0u8; 64];
            while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
            Ok(())
        }
    };
}

/// A world with the shipped store, a key, the shipped images published into `pub/` and
/// served, a settings file naming that source, and an empty store to pull into.
struct Shared {
    w: World,
    server: Server,
}

const IMAGES: [&str; 2] = ["Debian_12_Minimal", "Linux_CD_Install"];

impl Shared {
    fn new() -> Shared {
        let w = World::new();
        let o = w.run(&["store", "init"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = w
            .cmd()
            .args(["key", "generate", "publisher"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let publish = w.run(&[
            "image",
            "publish",
            IMAGES[0],
            IMAGES[1],
            "--to",
            "pub",
            "--key",
            "publisher.key",
        ]);
        assert!(publish.status.success(), "{}", stderr(&publish));
        std::fs::create_dir(w.path().join("fresh")).unwrap();
        let server = Server::start(&w.path().join("pub"));
        let s = Shared { w, server };
        s.settings(&s.server.url(), "");
        s
    }

    fn public_key(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.w.path().join(format!("{name}.pub"))).unwrap();
        text.lines().last().unwrap().to_string()
    }

    fn settings(&self, url: &str, extra: &str) {
        self.w.write(
            "convirt.toml",
            &format!(
                "{extra}[sources.main]\nurl = '{url}'\npublic_key = '{}'\n",
                self.public_key("publisher")
            ),
        );
    }

    fn fresh(&self) -> PathBuf {
        self.w.path().join("fresh")
    }

    /// convirt with the settings and the fresh store.
    fn run(&self, args: &[&str]) -> Output {
        self.w
            .cmd()
            .env("CONVIRT_CONFIG", self.w.path().join("convirt.toml"))
            .env("CONVIRT_HTTP_TIMEOUT", "2")
            .arg("--store")
            .arg(self.fresh())
            .args(args)
            .output()
            .unwrap()
    }

    fn pub_file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.w.path().join("pub").join(name)).unwrap()
    }
}

#[test]
fn key_generate_writes_a_private_key_and_never_overwrites() {
    let w = World::new();
    let o = w.cmd().args(["key", "generate", "k1"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let key = w.path().join("k1.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public = std::fs::read_to_string(w.path().join("k1.pub")).unwrap();
    let last = public.lines().last().unwrap();
    assert!(last.starts_with("RW") && last.len() == 56, "{public}");
    assert!(
        stdout(&o).contains(&format!("public_key = \"{last}\"")),
        "{}",
        stdout(&o)
    );
    let before = std::fs::read(&key).unwrap();
    let o = w.cmd().args(["key", "generate", "k1"]).output().unwrap();
    fails_saying(&o, "already exists");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    // A public key alone in the way is refused too, and no secret key is written.
    std::fs::write(w.path().join("k2.pub"), "x").unwrap();
    let o = w.cmd().args(["key", "generate", "k2"]).output().unwrap();
    fails_saying(&o, "k2.pub` already exists");
    assert!(!w.path().join("k2.key").exists());
    let o = w.cmd().args(["key", "generate", "../k3"]).output().unwrap();
    fails_saying(&o, "is not a key name");
    // A secret key others can read is refused for signing.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    w.image("x", "", "name = ''\n");
    let o = w.run(&["image", "publish", "x", "--to", "pub", "--key", "k1.key"]);
    fails_saying(&o, "is open to other users (mode 0644)");
    assert!(!w.path().join("pub").exists());
}

#[test]
fn publish_search_pull_round_trip() {
    let s = Shared::new();
    let index_bytes = s.pub_file("index.json");
    let index: serde_json::Value = serde_json::from_slice(&index_bytes).unwrap();
    let entries = index["images"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for (e, name) in entries.iter().zip(IMAGES) {
        assert_eq!(e["name"], name);
        assert_eq!(e["version"], 1);
        assert_eq!(e["url"], format!("{name}-1.tar.gz"));
        let pack = s.pub_file(&format!("{name}-1.tar.gz"));
        assert_eq!(e["size"], pack.len());
        assert!(
            s.w.path()
                .join(format!("pub/{name}-1.tar.gz.minisig"))
                .exists()
        );
    }
    assert_eq!(entries[0]["kind"], "PVH");
    assert_eq!(entries[1]["kind"], "HVM");
    assert!(entries[1]["title"].as_str().unwrap().contains("CD/DVD"));

    // Publishing the same images again changes nothing: the packs are reproducible.
    let again = s.w.run(&[
        "image",
        "publish",
        IMAGES[0],
        "--to",
        "pub",
        "--key",
        "publisher.key",
    ]);
    assert!(
        stdout(&again).contains("is unchanged since version 1"),
        "{}",
        stdout(&again)
    );
    assert!(
        s.pub_file("index.json") == index_bytes,
        "the index was rewritten"
    );

    let o = s.run(&["image", "search"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("SOURCE  NAME"), "{out}");
    assert!(
        out.contains("main    Debian_12_Minimal  v1       PVH   "),
        "{out}"
    );
    let o = s.run(&["image", "search", "cd/dvd"]);
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));

    let o = s.run(&["image", "pull", "Linux_CD_Install"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("pulled `Linux_CD_Install` version 1 from source `main`"),
        "{}",
        stdout(&o)
    );
    // The pulled image is the published one, file for file.
    let mut pulled = tree(&s.fresh().join("Linux_CD_Install"));
    pulled.remove(".convirt-manifest");
    assert_eq!(pulled, tree(&s.w.store().join("Linux_CD_Install")));
    let o = s.run(&["image", "list"]);
    assert!(stdout(&o).contains("ORIGIN"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("Linux_CD_Install  HVM   -         main v1"),
        "{}",
        stdout(&o)
    );
    let o = s.run(&["--json", "image", "search"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[1]["installed"]["state"], "version");
    assert_eq!(v[1]["installed"]["older"], false);
    assert_eq!(v[0]["installed"]["state"], "no");

    // A second publish of a changed image is version 2; the installed one shows as older,
    // and pulling it again needs --force.
    let conf = s.w.store().join("Linux_CD_Install/vm_conf.template");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\n# changed\n");
    std::fs::write(&conf, text).unwrap();
    let o = s.w.run(&[
        "image",
        "publish",
        "Linux_CD_Install",
        "--to",
        "pub",
        "--key",
        "publisher.key",
    ]);
    assert!(
        stdout(&o).contains("published `Linux_CD_Install` version 2"),
        "{}",
        stdout(&o)
    );
    let o = s.run(&["image", "search", "Linux"]);
    assert!(stdout(&o).contains("v2       HVM   "), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("  v1         yes    "),
        "{}",
        stdout(&o)
    );
    let o = s.run(&["image", "pull", "Linux_CD_Install"]);
    fails_saying(&o, "already exists");
    let o = s.run(&["image", "pull", "Linux_CD_Install", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("version 2"), "{}", stdout(&o));
    let o = s.run(&["image", "pull", "Debian_12_Minimal@1", "--from", "main"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = s.run(&["image", "pull", "Debian_12_Minimal@7"]);
    fails_saying(&o, "no source offers `Debian_12_Minimal@7`");
    assert!(
        stderr(&o).contains("hint: the versions offered: 1"),
        "{}",
        stderr(&o)
    );
    let o = s.run(&["image", "pull", "Linux_CD_Instal", "--force"]);
    fails_saying(&o, "did you mean `Linux_CD_Install`?");

    // The names the sources offered complete `image pull`, from the index last verified.
    let (got, _) = crate::complete::complete(
        &s.w,
        &[(
            "CONVIRT_STATE_DIR",
            s.w.path().join("state").to_str().unwrap(),
        )],
        &["convirt", "image", "pull", ""],
    );
    let names: Vec<&str> = got
        .iter()
        .map(String::as_str)
        .filter(|n| !n.starts_with('-'))
        .collect();
    assert_eq!(names, IMAGES);

    // `--json image list` carries the origin; an image replaced by other means loses it.
    let o = s.run(&["--json", "image", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[1]["origin"]["source"], "main");
    assert_eq!(v[1]["origin"]["version"], 2);
    assert!(v[1]["origin"].get("dir_ino").is_none(), "{v}");
    let dir = s.fresh().join("Linux_CD_Install");
    std::fs::remove_dir_all(&dir).unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(s.w.store().join("Linux_CD_Install"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let o = s.run(&["--json", "image", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v[1].get("origin").is_none(), "{v}");
    assert_eq!(v[0]["origin"]["source"], "main");
}

/// Runs `image pull` and checks that it failed saying `want`, with the store unchanged.
#[track_caller]
fn refused(s: &Shared, args: &[&str], want: &str) {
    let before = tree(&s.fresh());
    let o = s.run(args);
    fails_saying(&o, want);
    assert_eq!(
        tree(&s.fresh()),
        before,
        "the store changed: {}",
        stderr(&o)
    );
}

/// Signs `data` with the secret key file `key` (minisign, as `image publish` does).
fn sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let text = std::fs::read_to_string(key).unwrap();
    let sk = minisign::SecretKey::from_unencrypted_box(
        minisign::SecretKeyBox::from_string(&text).unwrap(),
    )
    .unwrap();
    minisign::sign(None, &sk, std::io::Cursor::new(data), Some("test"), None)
        .unwrap()
        .to_string()
        .into_bytes()
}

#[test]
fn attacks_are_refused_and_leave_the_store_unchanged() {
    let s = Shared::new();
    let pull = ["image", "pull", "Linux_CD_Install"];
    let pack = "/Linux_CD_Install-1.tar.gz";
    let index = s.pub_file("index.json");

    // A changed index (its signature is the publisher's, for the old text).
    let changed = String::from_utf8(index.clone())
        .unwrap()
        .replace("CD/DVD", "CD/DVX");
    s.server
        .set("/index.json", Answer::Body(changed.into_bytes()));
    refused(&s, &pull, "does not verify against the source's public key");
    s.reset_all();
    // A damaged signature (a global signature too short for minisign's own check).
    let sig = String::from_utf8(s.pub_file("index.json.minisig")).unwrap();
    let short: Vec<&str> = sig.lines().collect();
    let short = format!("{}\n{}\n{}\nAAAA\n", short[0], short[1], short[2]);
    s.server
        .set("/index.json.minisig", Answer::Body(short.into_bytes()));
    refused(&s, &pull, "the signature is malformed");
    s.reset_all();

    // A changed pack, of the same size.
    let mut bad = s.pub_file(&pack[1..]);
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    s.server.set(pack, Answer::Body(bad));
    refused(&s, &pull, "the pack was changed");
    s.reset_all();

    // A pack signed by another key: the same bytes (packs are reproducible), the
    // signature from a second publisher.
    let o =
        s.w.cmd()
            .args(["key", "generate", "other"])
            .output()
            .unwrap();
    assert!(o.status.success());
    let o = s.w.run(&[
        "image",
        "publish",
        "Linux_CD_Install",
        "--to",
        "pub2",
        "--key",
        "other.key",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(s.w.path().join("pub2").join(&pack[1..])).unwrap(),
        s.pub_file(&pack[1..])
    );
    let sig = std::fs::read(
        s.w.path()
            .join("pub2")
            .join(format!("{}.minisig", &pack[1..])),
    )
    .unwrap();
    s.server.set(&format!("{pack}.minisig"), Answer::Body(sig));
    refused(&s, &pull, "the pack's signature: it is signed by key");
    s.reset_all();
    // The other publisher's whole directory, index and all, is refused at the index.
    s.server.serve_dir(&s.w.path().join("pub2"));
    refused(&s, &pull, "does not verify against the source's public key");
    s.server.serve_dir(&s.w.path().join("pub"));

    // A pack bigger than its entry: with a Content-Length, and without one.
    let mut big = s.pub_file(&pack[1..]);
    big.extend_from_slice(&[0u8; 4096]);
    s.server.set(pack, Answer::Body(big.clone()));
    refused(&s, &pull, "larger than the");
    s.server.set(pack, Answer::Unsized(big));
    refused(&s, &pull, "larger than the");
    s.reset_all();

    // A server that stalls mid-download (CONVIRT_HTTP_TIMEOUT=2 in these runs).
    let body = s.pub_file(&pack[1..]);
    let sent = body.len() / 2;
    s.server.set(pack, Answer::Stall { body, sent });
    refused(&s, &pull, "stalled");
    s.reset_all();

    // A redirect to another host; one within the same host is followed.
    s.server.set(
        pack,
        Answer::Redirect(format!("http://127.0.0.2:{}{pack}", s.server.port)),
    );
    refused(&s, &pull, "follows redirects only within the same host");
    s.server.set(
        pack,
        Answer::Redirect(format!("http://localhost:{}{pack}", s.server.port)),
    );
    refused(&s, &pull, "follows redirects only within the same host");
    s.reset_all();

    // Index entries with a path in the name or in the url, signed by the publisher.
    let key = s.w.path().join("publisher.key");
    for (from, to, want) in [
        (
            "\"name\": \"Linux_CD_Install\"",
            "\"name\": \"../Linux_CD_Install\"",
            "index entry `../Linux_CD_Install`",
        ),
        (
            "\"url\": \"Linux_CD_Install-1.tar.gz\"",
            "\"url\": \"../../Linux_CD_Install-1.tar.gz\"",
            "is not a plain file name",
        ),
    ] {
        let text = String::from_utf8(index.clone()).unwrap().replace(from, to);
        assert_ne!(text.as_bytes(), &index[..]);
        s.server.set(
            "/index.json.minisig",
            Answer::Body(sign(&key, text.as_bytes())),
        );
        s.server.set("/index.json", Answer::Body(text.into_bytes()));
        refused(
            &s,
            &["image", "pull", "../Linux_CD_Install"],
            "image name `../Linux_CD_Install`",
        );
        refused(&s, &pull, want);
    }
    s.reset_all();

    // An older index replayed over a newer one: publish version 2, read it, then serve the
    // old index again (its signature is good, its time is older).
    let old_index = s.pub_file("index.json");
    let old_sig = s.pub_file("index.json.minisig");
    let conf = s.w.store().join("Linux_CD_Install/vm_conf.template");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\n# v2\n");
    std::fs::write(&conf, text).unwrap();
    let o = s.w.run(&[
        "image",
        "publish",
        "Linux_CD_Install",
        "--to",
        "pub",
        "--key",
        "publisher.key",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = s.run(&["image", "search"]);
    assert!(o.status.success(), "{}", stderr(&o));
    s.server.set("/index.json", Answer::Body(old_index));
    s.server.set("/index.json.minisig", Answer::Body(old_sig));
    refused(&s, &pull, "an old index replayed");
    let o = s.run(&["image", "search"]);
    fails_saying(&o, "an old index replayed");
    s.reset_all();

    // After all that, the real thing still works, through a redirect within the same host.
    s.server
        .set(pack, Answer::Redirect(format!("/moved{pack}")));
    s.server.set(
        &format!("/moved{pack}"),
        Answer::Body(s.pub_file(&pack[1..])),
    );
    let o = s.run(&["image", "pull", "Linux_CD_Install@1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("version 1"), "{}", stdout(&o));
}

impl Shared {
    fn reset_all(&self) {
        self.server.reset();
    }
}

#[test]
fn sources_must_use_https_or_loopback() {
    let s = Shared::new();
    s.settings("http://example.org/images", "");
    let o = s.run(&["image", "search"]);
    fails_saying(&o, "plain http is allowed only to 127.0.0.1 and [::1]");
    assert!(stderr(&o).contains("convirt.toml:2"), "{}", stderr(&o));
    s.w.write(
        "convirt.toml",
        "[sources.main]\nurl = 'https://x.example'\npublic_key = 'RWQ'\nmirror = 1\n",
    );
    let o = s.run(&["image", "search"]);
    fails_saying(&o, "unknown field `mirror`");
    assert!(stderr(&o).contains("convirt.toml:4"), "{}", stderr(&o));
    s.w.write(
        "convirt.toml",
        "[sources.main]\nurl = 'https://x.example'\npublic_key = 'nonsense'\n",
    );
    let o = s.run(&["image", "search"]);
    fails_saying(&o, "not a minisign public key");
    assert!(stderr(&o).contains("convirt.toml:3"), "{}", stderr(&o));
    // file:// works like a server.
    s.settings(&format!("file://{}", s.w.path().join("pub").display()), "");
    let o = s.run(&["image", "pull", "Debian_12_Minimal"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn import_verifies_a_signature_beside_the_file() {
    let s = Shared::new();
    let pack = s.w.path().join("pub/Linux_CD_Install-1.tar.gz");
    // Signed by the key of a configured source: verified and recorded.
    let o = s.run(&["image", "import"]);
    assert_eq!(o.status.code(), Some(2));
    let o = s.run(&["image", "import", pack.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("good signature by key"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("(source `main`)"), "{}", stdout(&o));
    let o = s.run(&["image", "list"]);
    assert!(
        stdout(&o).contains("file Linux_CD_Install-1.tar.gz"),
        "{}",
        stdout(&o)
    );

    // A tampered signature is refused, the store unchanged.
    let copy = s.w.path().join("copy.tar.gz");
    std::fs::copy(&pack, &copy).unwrap();
    let sig =
        std::fs::read_to_string(s.w.path().join("pub/Debian_12_Minimal-1.tar.gz.minisig")).unwrap();
    std::fs::write(s.w.path().join("copy.tar.gz.minisig"), sig).unwrap();
    let before = tree(&s.fresh());
    let o = s.run(&["image", "import", "--force", copy.to_str().unwrap()]);
    fails_saying(&o, "does not verify against any trusted key");
    assert_eq!(tree(&s.fresh()), before);

    // Unsigned: imported unless signatures are required, by flag or setting.
    std::fs::remove_file(s.w.path().join("copy.tar.gz.minisig")).unwrap();
    let o = s.run(&[
        "image",
        "import",
        "--force",
        "--require-signature",
        copy.to_str().unwrap(),
    ]);
    fails_saying(&o, "has no signature beside it");
    assert_eq!(tree(&s.fresh()), before);
    s.settings(&s.server.url(), "require_signature = true\n");
    let o = s.run(&["image", "import", "--force", copy.to_str().unwrap()]);
    fails_saying(&o, "`require_signature = true` is set in the settings");
    assert_eq!(tree(&s.fresh()), before);
    s.settings(&s.server.url(), "");
    let o = s.run(&["image", "import", "--force", copy.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    // --public-key trusts a key without a source.
    s.w.write("convirt.toml", "");
    let o = s.run(&[
        "image",
        "import",
        "--force",
        pack.to_str().unwrap(),
        "--public-key",
        "publisher.pub",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("(--public-key)"), "{}", stdout(&o));
}

#[test]
fn several_sources_need_from() {
    let s = Shared::new();
    let o =
        s.w.cmd()
            .args(["key", "generate", "other"])
            .output()
            .unwrap();
    assert!(o.status.success());
    let o = s.w.run(&[
        "image",
        "publish",
        "Linux_CD_Install",
        "--to",
        "pub2",
        "--key",
        "other.key",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let second = format!(
        "[sources.second]\nurl = 'file://{}'\npublic_key = '{}'\n",
        s.w.path().join("pub2").display(),
        s.public_key("other")
    );
    s.settings(&s.server.url(), "");
    let text = std::fs::read_to_string(s.w.path().join("convirt.toml")).unwrap();
    s.w.write("convirt.toml", &format!("{text}{second}"));
    let o = s.run(&["image", "search", "cd/dvd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
    let o = s.run(&["image", "pull", "Linux_CD_Install"]);
    fails_saying(&o, "is offered by several sources: `main`, `second`");
    // Only one offers Debian_12_Minimal.
    let o = s.run(&["image", "pull", "Debian_12_Minimal"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = s.run(&["image", "pull", "Linux_CD_Install", "--from", "second"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("from source `second`"),
        "{}",
        stdout(&o)
    );
    let o = s.run(&["image", "pull", "Linux_CD_Install", "--from", "third"]);
    fails_saying(&o, "no source `third` in the settings");
    // One source failing fails a pull that reads them all, and says how to read one.
    std::fs::write(s.w.path().join("pub2/index.json.minisig"), "x").unwrap();
    let o = s.run(&["image", "pull", "Debian_12_Minimal", "--force"]);
    fails_saying(&o, "source `second`");
    assert!(
        stderr(&o).contains("`--from SOURCE` reads one"),
        "{}",
        stderr(&o)
    );
    let o = s.run(&[
        "image",
        "pull",
        "Debian_12_Minimal",
        "--force",
        "--from",
        "main",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}
