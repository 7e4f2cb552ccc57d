//! `convirt __serve`: convirt's side on a server (docs/remote.md). It reads one request from
//! the ssh channel (`proto`) and answers it with exactly the code a local run calls:
//! `provision::execute` (lock, checks, journal in the server user's state dir, work dir,
//! `provision.sh` with its timeout and process group, atomic install, `--keep`, `--start`,
//! `--autostart`, cleanup), the records' removal, the presence checks. Nothing keeps running
//! after it answers. The channel is its watchdog: its end of file, or an answer that cannot
//! be written, stops the run as Ctrl-C does, and the engine removes what the run made.

use super::proto::{self, Event, Facts, Hello, Removed, Request};
use crate::provision::{self, Tree, run::Watcher};
use crate::remote::wire;
use crate::state::{self, Item, LOCALHOST, Vm};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The answers, shared by the run and its watcher; a write that fails means the channel is
/// gone.
#[derive(Clone)]
struct Out(Arc<Mutex<std::io::Stdout>>);

impl Out {
    /// Sends `e`; false (and the channel counted as lost) when it could not be written.
    fn send(&self, e: &Event) -> bool {
        let ok = match self.0.lock() {
            Ok(mut o) => proto::send(&mut *o, e).is_ok(),
            Err(_) => false,
        };
        if !ok {
            crate::interrupt::lose();
        }
        ok
    }
}

struct Forward(Out);

impl Watcher for Forward {
    fn line(&mut self, line: &str) {
        // A line is bounded like every message.
        let mut l = line.to_string();
        if l.len() > 64 << 10 {
            let mut cut = 64 << 10;
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            l.truncate(cut);
        }
        self.0.send(&Event::Output(l));
    }
    fn started(&mut self) {
        self.0.send(&Event::Started);
    }
    fn step(&mut self, step: provision::run::Step) {
        self.0.send(&Event::Step(step));
    }
}

/// Runs the server side; returns the exit status.
pub(crate) fn main(found: Option<String>) -> i32 {
    crate::interrupt::install_for_server();
    let out = Out(Arc::new(Mutex::new(std::io::stdout())));
    let mut input = std::io::BufReader::new(std::io::stdin());
    let hello: Hello = match proto::receive(&mut input) {
        Ok(Some(h)) => h,
        _ => return 2,
    };
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "convirt".into());
    out.send(&Event::Hello(Hello::ours(Some(format!(
        "{} {exe}",
        found.as_deref().unwrap_or("path")
    )))));
    if hello.protocol != wire::VERSION {
        out.send(&Event::Error {
            message: format!(
                "this server's {} speaks protocol {}, this machine's {} speaks {}",
                wire::version(),
                wire::VERSION,
                hello.convirt,
                hello.protocol
            ),
            hints: vec!["install the same convirt version on both".into()],
        });
        return 1;
    }
    let mut status = 0;
    let mut next = None;
    loop {
        let line = match next.take() {
            Some(l) => Ok(Some(l)),
            None => wire::read_line(&mut input),
        };
        let request: Request = match line.map(|l| l.map(|l| wire::parse(&l))) {
            Ok(Some(Ok(r))) => r,
            Ok(None) => return status,
            Ok(Some(Err(e))) => return refuse(&out, &e),
            Err(e) => return refuse(&out, &e.to_string()),
        };
        // A signal (sshd's SIGHUP as the connection goes) ends the channel's runs.
        if crate::interrupt::interrupted() {
            return 1;
        }
        let (code, back) = answer(request, input, &out);
        status = code;
        // Only a provisioning run gives the channel back, with the next request the
        // watchdog read (this machine sends one only after the answer): one channel for a
        // host's VMs of a batch, so neither ssh nor this program starts again for each.
        match back {
            Some((i, Some(l))) => (input, next) = (i, Some(l)),
            _ => return status,
        }
    }
}

/// The request could not be read: said, and the channel ends.
fn refuse(out: &Out, why: &str) -> i32 {
    out.send(&Event::Error {
        message: format!("the request could not be read: {why}"),
        hints: vec![],
    });
    1
}

/// What the watchdog hands back after a run: the channel's input, and the next request's
/// line (`None`: the channel ended).
type Back = (Input, Option<Vec<u8>>);
type Input = std::io::BufReader<std::io::Stdin>;

/// Answers one request; returns the exit status and, after a provisioning run, what the
/// watchdog hands back.
fn answer(request: Request, mut input: Input, out: &Out) -> (i32, Option<Back>) {
    let mut keep_for: Option<(std::path::PathBuf, String)> = None;
    // Held until the answer is delivered or kept: a `status` request after a lost
    // connection waits for it as for the VM's lock, which the run releases before this
    // answers (else it could read the server's files before the kept answer is there, and
    // that answer would stay behind).
    let mut _answering = None;
    if let Request::Provision { job, .. } = &request {
        keep_for = Some((undelivered_path(&job.state_dir, &job.vm), job.run.clone()));
        _answering = crate::lock::lock(&job.work_dir, &answer_lock(&job.vm), "answer").ok();
    }
    let mut watch = None;
    let answer = match request {
        Request::Facts => Event::Facts(facts()),
        Request::Provision { job, tree_bytes } => {
            let (e, w) = provision(*job, tree_bytes, input, out);
            watch = w;
            e
        }
        Request::Check { items } => Event::Checked {
            present: items.iter().map(Item::exists).collect(),
            domains: state::xen::domains_within(DOMAINS_TIMEOUT),
        },
        Request::Start { vm, state_dir } => Event::Launched(start(&vm, &own_state_dir(state_dir))),
        Request::Remove {
            vm,
            items,
            dry_run,
            state_dir,
        } => remove(&vm, &items, dry_run, &own_state_dir(state_dir)),
        Request::Status {
            vm,
            run,
            work_dir,
            state_dir,
        } => status(
            &vm,
            &run,
            &own_work_dir(work_dir),
            &own_state_dir(state_dir),
        ),
        Request::Seed(seed) => super::seed::receive(&seed, &mut input, |e| {
            out.send(e);
        }),
    };
    let fail = matches!(answer, Event::Error { .. } | Event::Failed { .. });
    // Lost before the answer, or the answer could not be written: keep it for the next
    // contact. Not when this machine closed the channel after reading it (the watchdog then
    // sees the end of its input too).
    let lost_before = crate::interrupt::lost();
    if let Some(w) = &watch {
        w.answering();
    }
    let delivered = out.send(&answer) && !lost_before;
    if let Some((path, run)) = keep_for.filter(|_| !delivered) {
        keep_undelivered(&path, run, answer);
    }
    let back = watch.and_then(|w| w.handle.join().ok());
    (i32::from(fail), back)
}

/// The name of the lock held while a run's answer is given (`@` is in no VM name).
fn answer_lock(vm: &str) -> String {
    format!("{vm}@answer")
}

fn undelivered_path(state_dir: &std::path::Path, vm: &str) -> std::path::PathBuf {
    state_dir.join("undelivered").join(format!("{vm}.json"))
}

/// Nobody heard the answer: it waits on the server for this machine's next contact.
fn keep_undelivered(path: &std::path::Path, run: String, answer: Event) {
    let kept = proto::Undelivered { run, answer };
    let written = serde_json::to_vec(&kept)
        .map_err(std::io::Error::other)
        .and_then(|text| {
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d)?;
            }
            crate::atomic::write(path, &text, 0o600, true)
        });
    if let Err(e) = written {
        tracing::warn!("cannot keep the answer in `{}`: {e}", path.display());
    }
}

/// The kept answer of run `run`, taken (removed) from the server.
fn take_undelivered(path: &std::path::Path, run: &str) -> Option<Event> {
    let text = std::fs::read(path).ok()?;
    let kept: proto::Undelivered = serde_json::from_slice(&text).ok()?;
    if kept.run != run {
        return None;
    }
    let _ = std::fs::remove_file(path);
    Some(kept.answer)
}

/// This server user's directories when a request names none (`settings::ServerDirs`, the
/// rule this machine planned with), and a named one read as a `[hosts.NAME]` path.
fn own_dir(
    asked: Option<std::path::PathBuf>,
    default: impl FnOnce(crate::settings::ServerDirs) -> std::path::PathBuf,
) -> std::path::PathBuf {
    let home = std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    match asked {
        Some(p) => crate::settings::server_path(&p, &home),
        None => default(crate::settings::ServerDirs::of(
            None,
            crate::sys::euid() == 0,
            &home,
        )),
    }
}

/// The state dir of the server's own records.
fn own_state_dir(asked: Option<std::path::PathBuf>) -> std::path::PathBuf {
    own_dir(asked, |d| d.state_dir)
}

/// The work dir of the server's runs.
fn own_work_dir(asked: Option<std::path::PathBuf>) -> std::path::PathBuf {
    own_dir(asked, |d| d.work_dir)
}

fn facts() -> Facts {
    Facts {
        host: crate::host::Host::local(None),
        uid: crate::sys::euid(),
        home: std::env::var_os("HOME").unwrap_or_default().into(),
        bridges: crate::bridge::bridges_in(std::path::Path::new("/sys/class/net")),
    }
}

/// The channel's watcher during a run.
struct Watch {
    /// Cleared as the answer goes out: a line after it is the next request.
    running: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Back>,
}

impl Watch {
    /// The run is over: whatever line comes now is the next request.
    fn answering(&self) {
        self.running
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Watches the channel after the request: `stop` raises the Ctrl-C flag, its end (or a
/// broken read) raises it as a lost connection. Once the answer is out, the next line is the
/// next request, handed back with the input.
fn watchdog(mut input: Input) -> Watch {
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r = running.clone();
    let handle = std::thread::spawn(move || {
        loop {
            match wire::read_line(&mut input) {
                Ok(Some(l)) if l == b"\"stop\"" || l == b"stop" => crate::interrupt::raise(),
                Ok(Some(l)) if !r.load(std::sync::atomic::Ordering::SeqCst) => {
                    return (input, Some(l));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    crate::interrupt::lose();
                    return (input, None);
                }
            }
        }
    });
    Watch { running, handle }
}

fn provision(
    mut job: provision::Job,
    tree_bytes: u64,
    mut input: Input,
    out: &Out,
) -> (Event, Option<Watch>) {
    // The tree is spooled whole before anything else: the channel is then free for `stop`.
    let spooled = tempfile::tempfile().and_then(|mut f| {
        let n = std::io::copy(&mut (&mut input).take(tree_bytes), &mut f)?;
        if n != tree_bytes {
            return Err(std::io::Error::other(format!(
                "{n} of {tree_bytes} bytes arrived"
            )));
        }
        std::io::Seek::rewind(&mut f)?;
        Ok(f)
    });
    let mut tree = match spooled {
        Ok(f) => f,
        Err(e) => {
            let e = Event::Error {
                message: format!("the work tree did not arrive whole: {e}"),
                hints: vec![],
            };
            return (e, None);
        }
    };
    let watch = watchdog(input);
    // Paths the job names are the server's; the store it copies from is the tree.
    job.store_root = std::path::PathBuf::new();
    let result = provision::execute(&job, Tree::Tar(&mut tree), &mut Forward(out.clone()));
    let own = Vm::load(&job.state_dir, LOCALHOST, &job.vm).ok().flatten();
    let event = match result {
        Ok(p) => Event::Provisioned {
            created: own
                .and_then(|v| v.record)
                .map(|r| r.created)
                .unwrap_or_default(),
            result: Box::new(p),
        },
        Err(e) => match e.downcast::<provision::Failure>() {
            Ok(failure) => Event::Failed {
                failure,
                left: own
                    .and_then(|v| v.run)
                    .map(|r| {
                        r.items
                            .into_iter()
                            .filter(Item::exists)
                            .map(Item::stat)
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            Err(e) => proto::error_event(&e),
        },
    };
    (event, Some(watch))
}

/// Where the server removes a VM's files: the directories its own record and journal of
/// that VM name (issue #18), never what the request alone claims.
fn server_bounds(state_dir: &std::path::Path, vm: &str) -> state::remove::Bounds {
    let Ok(Some(own)) = Vm::load(state_dir, LOCALHOST, vm) else {
        return state::remove::Bounds::new([]);
    };
    let mut roots = state::remove::header_roots(&own);
    let runs = own.run.iter().map(|r| &r.items);
    let recorded = own.record.iter().map(|r| &r.created);
    for i in runs.chain(recorded).flatten() {
        if i.kind == state::Kind::Workdir {
            roots.extend(
                std::path::Path::new(&i.path)
                    .parent()
                    .map(|p| p.to_path_buf()),
            );
        }
    }
    state::remove::Bounds::new(roots)
}

fn remove(vm: &str, items: &[Item], dry_run: bool, state_dir: &std::path::Path) -> Event {
    let running = state::xen::is_running(vm);
    if matches!(running, Ok(true)) {
        return Event::Removal {
            running,
            steps: vec![],
        };
    }
    let bounds = server_bounds(state_dir, vm);
    let steps: Vec<Removed> = items
        .iter()
        .map(|i| {
            let s = state::remove::remove_item(i, false, dry_run, &bounds);
            Removed {
                action: s.action.to_string(),
                why: s.why,
            }
        })
        .collect();
    // The server's own record of the VM goes with its files.
    if !dry_run
        && !steps.iter().any(|s| s.action == "failed")
        && let Ok(Some(own)) = Vm::load(state_dir, LOCALHOST, vm)
    {
        let _ = state::remove::forget(&own);
    }
    Event::Removal { running, steps }
}

/// How long a `Check` waits for the server's `xl list` (a listing waits for the answer).
const DOMAINS_TIMEOUT: Duration = Duration::from_secs(5);

/// `xl create` of the config the server's own record of `vm` names.
fn start(vm: &str, state_dir: &std::path::Path) -> Result<String, String> {
    let own = match Vm::load(state_dir, LOCALHOST, vm) {
        Ok(Some(v)) => v,
        Ok(None) => return Err(format!("this server has no record of a VM `{vm}`")),
        Err(e) => return Err(format!("{e:#}")),
    };
    if own.run.is_some() {
        return Err(format!(
            "`{vm}` is not provisioned completely on this server"
        ));
    }
    let config = own
        .header()
        .map(|h| h.config.clone())
        .ok_or_else(|| format!("the record of `{vm}` names no config"))?;
    if state::xen::is_running(vm)? {
        return Err(format!("`{vm}` is already running (`xl list`)"));
    }
    state::xen::create(std::path::Path::new(&config))?;
    Ok(config)
}

fn status(vm: &str, run: &str, work_dir: &std::path::Path, state_dir: &std::path::Path) -> Event {
    // A run cut off from convirt cleans up before it ends; wait for it (bounded).
    let end = Instant::now() + Duration::from_secs(120);
    while (crate::lock::held(work_dir, vm) || crate::lock::held(work_dir, &answer_lock(vm)))
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = take_undelivered(&undelivered_path(state_dir, vm), run).map(Box::new);
    match Vm::load(state_dir, LOCALHOST, vm) {
        Ok(Some(v)) => Event::Status {
            record: v.record.map(Box::new),
            leftovers: v.run.map(|r| {
                r.items
                    .into_iter()
                    .filter(Item::exists)
                    .map(Item::stat)
                    .collect()
            }),
            answer,
        },
        Ok(None) => Event::Status {
            record: None,
            leftovers: None,
            answer,
        },
        Err(e) => proto::error_event(&e),
    }
}
