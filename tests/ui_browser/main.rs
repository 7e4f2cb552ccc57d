//! The console in a real browser: Debian's `chromium`, driven by `chromedriver` over
//! WebDriver (fantoccini). Slow (a browser start, real provisioning runs), so it is its own
//! target (`test = false`), run by scripts/test.sh:
//!
//!   cargo test --test ui_browser -- --test-threads=1
//!
//! It saves a screenshot of each page under `target/ui-screenshots/`; the main ones are in
//! docs/ui.md (`UPDATE_DOCS=1` copies them to docs/ui/).
#![allow(unreachable_pub)]
#![allow(unsafe_code)]

use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn write_exec(p: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    write(p, text);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A provision.sh in ConVirt's style: options, common/defs and functions, both configs.
fn script(body: &str) -> String {
    format!(
        r#"#!/bin/bash
set -euo pipefail
while getopts "x:p:s:i:l:c:" opt; do
    case "$opt" in
        x) vm_config="$OPTARG" ;; p) args="$OPTARG" ;; s) store="$OPTARG" ;;
        i) image_name="$OPTARG" ;; l) log_file="$OPTARG" ;; c) image_conf="$OPTARG" ;;
        *) exit 2 ;;
    esac
done
source "$store/common/defs"
source "$store/common/functions"
source_python_config "$image_conf"
source_python_config "$vm_config"
source "$args"
{body}"#
    )
}

/// The shipped store plus test images, and settings that keep every write in `dir`.
fn sandbox(dir: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(repo().join("image_store"))
        .arg(dir.join("store"))
        .status()
        .unwrap();
    assert!(st.success());
    let p = dir.display();
    write(
        &dir.join("convirt.toml"),
        &format!(
            "image_store = '{p}/store'\nlog_dir = '{p}/log'\nwork_dir = '{p}/work'\nstate_dir = '{p}/state'\n\n[variables]\nVM_DISKS_DIR = '{p}/disks'\nVM_CONF_DIR = '{p}/conf'\nVM_CACHE_DIR = '{p}/cache'\n\n# A managed server that does not answer (nothing listens on port 1).\n[hosts.xen1]\naddress = '127.0.0.1'\nport = 1\nuser = 'root'\n"
        ),
    );
    let s = dir.join("store");
    // Two VMs at once: each writes a disk and streams a few lines.
    write(
        &s.join("Probe/image.conf"),
        "# the size of the VM's disk in MB\nxvda_disk_size = 64  # small for tests\nxvda_disk_create = 'yes'\nxvda_disk_type = 'VBD'\nlabel = 'probe'\nflavour = 'plain'\ncustomizable_options = ['xvda_disk_size', 'label']\n",
    );
    write(
        &s.join("Probe/vm_conf.template"),
        "name = ''\nmemory = 256\nkernel = '/usr/lib/xen/boot/pv-grub.gz'\ndisk = ['file:$VM_DISKS_DIR/$VM_NAME.disk,xvda,w']\nvif = ['mac=$AUTOGEN_MAC,bridge=$DEFAULT_BRIDGE']\n",
    );
    write_exec(
        &s.join("Probe/provision.sh"),
        &script(
            "for i in 1 2 3; do log_msg \"probe $VM_NAME step $i\"; done\nprovision_disks\nlog_msg \"probe $VM_NAME done\"\n",
        ),
    );
    write(
        &s.join("Probe/description.htm"),
        "<body><span style=\"font-size: 200%; color:#0000FF\">Probe image</span><br/>Writes a small disk and <i>logs</i> three steps.</body>",
    );
    // A run that waits for a file: reload mid-run, and the lock.
    write(
        &s.join("Slow/image.conf"),
        &format!("GO = '{p}/go'\nSTARTED = '{p}/started'\n"),
    );
    write(
        &s.join("Slow/vm_conf.template"),
        "name = ''\nmemory = 256\n",
    );
    write_exec(
        &s.join("Slow/provision.sh"),
        &script(
            "log_msg \"slow $VM_NAME waiting\"\ntouch \"$STARTED.$VM_NAME\"\nfor _ in $(seq 3000); do [ -e \"$GO\" ] && break; sleep 0.1; done\nlog_msg \"slow $VM_NAME done\"\n",
        ),
    );
    write(&s.join("Slow/description.htm"), "<body>Slow</body>");
    // The attacks a description may carry.
    write(&s.join("Hostile/image.conf"), "x = 1\n");
    write(
        &s.join("Hostile/vm_conf.template"),
        "name = ''\nmemory = 256\n",
    );
    write_exec(&s.join("Hostile/provision.sh"), "#!/bin/bash\nexit 0\n");
    write(
        &s.join("Hostile/description.htm"),
        "<body><span>Hostile image</span><script>document.title='PWNED'</script>\
<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">\
<a id=js href=\"javascript:document.body.setAttribute('data-pwned','2')\">click me</a></body>",
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn until<F, Fut>(what: &str, mut f: F) -> Res
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<bool>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        // A page being replaced answers "stale element" or "no such element": not yet.
        let last = match f().await {
            Ok(true) => return Ok(()),
            Ok(false) => String::new(),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what} {last}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Shots {
    dir: PathBuf,
}

impl Shots {
    async fn take(&self, c: &Client, name: &str) -> Res {
        let png = c.screenshot().await?;
        std::fs::write(self.dir.join(format!("{name}.png")), &png)?;
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let docs = repo().join("docs/ui");
            std::fs::create_dir_all(&docs)?;
            std::fs::write(docs.join(format!("{name}.png")), &png)?;
        }
        Ok(())
    }
}

async fn text(c: &Client, css: &str) -> Res<String> {
    Ok(c.find(Locator::Css(css)).await?.text().await?)
}

async fn body(c: &Client) -> Res<String> {
    text(c, "body").await
}

#[test]
fn the_console_in_chromium() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if let Err(e) = run().await {
            panic!("{e}");
        }
    });
}

async fn run() -> Res {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    sandbox(dir);
    let shots = Shots {
        dir: repo().join("target/ui-screenshots"),
    };
    std::fs::create_dir_all(&shots.dir)?;

    let mut ui = Command::new(env!("CARGO_BIN_EXE_convirt"))
        .arg("--config")
        .arg(dir.join("convirt.toml"))
        .args(["ui", "--listen", "127.0.0.1:0"])
        .env("HOME", dir)
        .env("CONVIRT_STATE_DIR", dir.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut out = BufReader::new(ui.stdout.take().ok_or("no stdout")?);
    let ui = Killed(ui);
    let mut line = String::new();
    out.read_line(&mut line)?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| format!("no URL in `{line}`"))?
        .to_string();
    let base = url.split("/?token=").next().unwrap_or_default().to_string();

    let port = free_port();
    let driver = Killed(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for_port(port);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", format!("--user-data-dir={}", dir.join("chromium").display())]
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await?;
    let r = steps(&c, &base, &url, dir, &shots).await;
    if r.is_err() {
        // Where it stopped, for the failure message.
        let _ = shots.take(&c, "failure").await;
        if let (Ok(u), Ok(b)) = (c.current_url().await, body(&c).await) {
            eprintln!("stopped at {u}:\n{b}");
        }
    }
    let _ = c.close().await;
    drop(driver);
    drop(ui);
    r
}

async fn steps(c: &Client, base: &str, url: &str, dir: &Path, shots: &Shots) -> Res {
    // Without the token: nothing.
    c.goto(&format!("{base}/")).await?;
    let b = body(c).await?;
    assert!(b.contains("not signed in"), "{b}");
    assert!(!b.contains("Linux_CD_Install"), "{b}");

    // The URL with the token: the image navigation, the token gone from the address bar.
    c.goto(url).await?;
    let here = c.current_url().await?;
    assert!(!here.as_str().contains("token"), "{here}");
    c.find(Locator::Css(
        "nav.images a[href='/images/Linux_CD_Install']",
    ))
    .await?
    .click()
    .await?;
    let desc = text(c, "section.description").await?;
    assert!(
        desc.contains("Linux Installation from a CD/DVD image"),
        "{desc}"
    );
    assert!(body(c).await?.contains("customizable"));
    shots.take(c, "image").await?;

    // A hostile description: no script ran, no handler fired, no javascript: link left.
    c.goto(&format!("{base}/images/Hostile")).await?;
    assert!(
        text(c, "section.description")
            .await?
            .contains("Hostile image")
    );
    assert_ne!(c.title().await?, "PWNED");
    if let Ok(a) = c.find(Locator::Css("section.description a")).await {
        let _ = a.click().await;
    }
    let pwned = c
        .execute("return document.body.getAttribute('data-pwned');", vec![])
        .await?;
    assert!(pwned.is_null(), "the description's script ran: {pwned}");
    assert!(!c.source().await?.contains("javascript:"));

    // Create Like.
    c.goto(&format!("{base}/images/Probe/create-like")).await?;
    c.find(Locator::Id("new"))
        .await?
        .send_keys("Probe_Copy")
        .await?;
    c.find(Locator::Id("title"))
        .await?
        .send_keys("A copy of the probe")
        .await?;
    shots.take(c, "create-like").await?;
    c.find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    until("the copy's page", || async {
        Ok(c.current_url().await?.path() == "/images/Probe_Copy")
    })
    .await?;
    assert!(dir.join("store/Probe_Copy/image.conf").exists());
    assert!(body(c).await?.contains("A copy of the probe"));

    // Edit Settings: a customizable value, written with its comment kept.
    c.goto(&format!("{base}/images/Probe_Copy/edit?tab=Disks"))
        .await?;
    let size = c
        .find(Locator::Css("input[name='img:xvda_disk_size']"))
        .await?;
    size.clear().await?;
    size.send_keys("128").await?;
    shots.take(c, "edit-settings").await?;
    c.find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    until("the saved note", || async {
        Ok(body(c).await?.contains("Saved"))
    })
    .await?;
    let conf = std::fs::read_to_string(dir.join("store/Probe_Copy/image.conf"))?;
    assert!(
        conf.contains(
            "# the size of the VM's disk in MB\nxvda_disk_size = 128  # small for tests\n"
        ),
        "{conf}"
    );
    // A non-customizable value: read-only in the page; forced past that, refused.
    c.goto(&format!("{base}/images/Probe_Copy/edit?tab=Miscellaneous"))
        .await?;
    let flavour = c.find(Locator::Css("input[name='img:flavour']")).await?;
    assert!(flavour.attr("readonly").await?.is_some());
    c.execute(
        "const f = document.querySelector(\"input[name='img:flavour']\"); f.removeAttribute('readonly'); f.value = \"'fancy'\";",
        vec![],
    )
    .await?;
    c.find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    until("the refusal", || async {
        Ok(body(c).await?.contains("not customizable"))
    })
    .await?;
    let conf2 = std::fs::read_to_string(dir.join("store/Probe_Copy/image.conf"))?;
    assert_eq!(conf, conf2);
    // A wrong CSRF token: refused, nothing written.
    c.goto(&format!("{base}/images/Probe_Copy/edit?tab=Disks"))
        .await?;
    c.execute(
        "document.querySelector(\"input[name='csrf']\").value = 'forged'; document.querySelector(\"input[name='img:xvda_disk_size']\").value = '999';",
        vec![],
    )
    .await?;
    c.find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    until("the CSRF refusal", || async {
        Ok(body(c).await?.contains("CSRF"))
    })
    .await?;
    assert_eq!(
        conf,
        std::fs::read_to_string(dir.join("store/Probe_Copy/image.conf"))?
    );

    // Provision two VMs from a shipped image and watch both logs finish.
    std::fs::write(dir.join("install.iso"), "")?;
    c.goto(&format!("{base}/images/Linux_CD_Install/provision"))
        .await?;
    c.find(Locator::Id("vms"))
        .await?
        .send_keys("web1 web2")
        .await?;
    let iso = c.find(Locator::Id("p-img-INSTALL_ISO")).await?;
    iso.clear().await?;
    iso.send_keys(&dir.join("install.iso").display().to_string())
        .await?;
    shots.take(c, "provision").await?;
    c.find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    until("both VMs done", || async {
        let done = c
            .find_all(Locator::Css("section.vm[data-state='done']"))
            .await?
            .len();
        Ok(done == 2)
    })
    .await?;
    for vm in ["web1", "web2"] {
        let log = text(c, &format!("section.vm[data-vm='{vm}'] pre.log")).await?;
        assert!(
            log.contains(&format!("Provisioning of VM {vm} completed")),
            "{vm}: {log}"
        );
        assert!(dir.join(format!("conf/{vm}.cfg")).exists());
        assert!(dir.join(format!("disks/{vm}.disk.xm")).exists());
    }
    shots.take(c, "run").await?;

    // A run outlives its page: reload mid-run and reattach.
    c.goto(&format!("{base}/images/Slow/provision")).await?;
    c.find(Locator::Id("vms")).await?.send_keys("slow1").await?;
    c.find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    until("the run page", || async {
        Ok(c.current_url().await?.path().starts_with("/runs/"))
    })
    .await?;
    let run_url = c.current_url().await?;
    until("the slow run to start", || async {
        Ok(dir.join("started.slow1").exists())
    })
    .await?;
    c.refresh().await?;
    until("the reattached log", || async {
        Ok(text(c, "section.vm[data-vm='slow1'] pre.log")
            .await?
            .contains("slow slow1 waiting"))
    })
    .await?;

    // Two tabs provisioning the same name meet the lock.
    let first = c.window().await?;
    let tab = c.new_window(true).await?;
    c.switch_to_window(tab.handle).await?;
    c.goto(&format!("{base}/images/Slow/provision")).await?;
    c.find(Locator::Id("vms")).await?.send_keys("slow1").await?;
    c.find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    until("the second tab's refusal", || async {
        Ok(c.find_all(Locator::Css("section.vm[data-state='failed']"))
            .await?
            .len()
            == 1)
    })
    .await?;
    let refusal = text(c, "section.vm .result").await?;
    assert!(refusal.contains("already being provisioned"), "{refusal}");
    shots.take(c, "lock").await?;
    c.close_window().await?;
    c.switch_to_window(first).await?;
    assert_eq!(c.current_url().await?, run_url);
    std::fs::write(dir.join("go"), "")?;
    until("the slow run done", || async {
        Ok(c.find_all(Locator::Css("section.vm[data-state='done']"))
            .await?
            .len()
            == 1)
    })
    .await?;
    assert!(text(c, "pre.log").await?.contains("slow slow1 done"));

    // The VMs page, with a record of a managed server that does not answer (a copy of
    // web2's record under `[hosts.xen1]`): listed with its host and state `-`. Then remove
    // one, after seeing exactly what goes.
    std::fs::create_dir_all(dir.join("state/hosts/xen1"))?;
    let st = Command::new("cp")
        .arg("-a")
        .arg(dir.join("state/vms/web2"))
        .arg(dir.join("state/hosts/xen1/web2"))
        .status()?;
    assert!(st.success());
    c.goto(&format!("{base}/vms")).await?;
    let b = body(c).await?;
    for vm in ["web1", "web2", "slow1", "xen1: no answer"] {
        assert!(b.contains(vm), "{vm}: {b}");
    }
    shots.take(c, "vms").await?;
    c.find(Locator::Css("a[aria-label='Remove web1 on localhost']"))
        .await?
        .click()
        .await?;
    let plan = body(c).await?;
    assert!(
        plan.contains(&format!("{}/disks/web1.disk.xm", dir.display())),
        "{plan}"
    );
    shots.take(c, "remove").await?;
    c.find(Locator::Css("button.danger")).await?.click().await?;
    until("the VMs page again", || async {
        Ok(c.current_url().await?.path() == "/vms")
    })
    .await?;
    assert!(!dir.join("disks/web1.disk.xm").exists());
    assert!(!dir.join("conf/web1.cfg").exists());
    assert!(dir.join("conf/web2.cfg").exists());
    assert!(!body(c).await?.contains("web1"));

    // Phone width.
    c.set_window_size(390, 844).await?;
    c.goto(&format!("{base}/images/Probe")).await?;
    shots.take(c, "phone").await?;
    Ok(())
}
