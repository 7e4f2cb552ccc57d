//! Provisioning from the browser: the form (VM names, target, customizable values checked as
//! the CLI checks them), runs that live in the server (not in the page) and their events,
//! streamed over SSE and replayed from the start to a page that reattaches.

use super::html::{self, csrf_field, esc, seg};
use super::{Shared, Ui, blocking, messages};
use crate::image::{self, Image};
use crate::provision::batch::{self, Batch, Outcome, What};
use crate::provision::run::Step;
use crate::provision::{self, Options};
use crate::resolve::{self, Entry, Overrides};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most VMs of one run provisioned side by side.
const MAX_PARALLEL: usize = 4;

/// The most log lines a run keeps in memory for its page; the log files have them all.
const MAX_LINES: usize = 100_000;

/// One thing that happened in a run, as sent to the page.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Event {
    pub vm: String,
    /// `step` (a new phase), `line` (a line of the script's log), `done`, `failed`.
    pub kind: &'static str,
    pub text: String,
    /// The batch's name of the step (`plan`, `lock`, `script`, ...) or outcome
    /// (`provisioned`, `failed`, ...), as the event stream of `provision --events` says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<&'static str>,
}

pub(crate) struct Run {
    pub id: u64,
    pub image: String,
    pub target: Option<String>,
    pub vms: Vec<String>,
    events: Mutex<Vec<Event>>,
    /// The number of events, for the streams waiting on more.
    count: tokio::sync::watch::Sender<usize>,
    finished: AtomicBool,
    lines: AtomicUsize,
}

impl Run {
    fn push(&self, e: Event) {
        let mut e = e;
        if e.kind == "line" {
            let lines = self.lines.fetch_add(1, Ordering::SeqCst);
            if lines > MAX_LINES {
                return;
            }
            if lines == MAX_LINES {
                e = Event {
                    vm: e.vm,
                    kind: "step",
                    text: format!(
                        "more than {MAX_LINES} log lines: the page shows no more; the log files have them all"
                    ),
                    step: None,
                };
            }
        }
        let n = match self.events.lock() {
            Ok(mut v) => {
                v.push(e);
                v.len()
            }
            Err(_) => return,
        };
        self.count.send_replace(n);
    }

    fn events_from(&self, from: usize) -> Vec<Event> {
        self.events
            .lock()
            .map(|v| v.get(from..).map(<[Event]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }

    fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        // Wake the streams so they see the end.
        self.count.send_modify(|_| {});
    }

    fn outcome(&self, vm: &str) -> &'static str {
        let events = self.events_from(0);
        events
            .iter()
            .rev()
            .find(|e| e.vm == vm && (e.kind == "done" || e.kind == "failed"))
            .map(|e| e.kind)
            .unwrap_or(if self.finished.load(Ordering::SeqCst) {
                "failed"
            } else {
                "running"
            })
    }
}

#[derive(Default)]
pub(crate) struct Runs {
    all: Mutex<BTreeMap<u64, Arc<Run>>>,
}

impl Runs {
    pub(crate) fn unfinished(&self) -> usize {
        self.all
            .lock()
            .map(|m| {
                m.values()
                    .filter(|r| !r.finished.load(Ordering::SeqCst))
                    .count()
            })
            .unwrap_or(0)
    }

    fn get(&self, id: u64) -> Option<Arc<Run>> {
        self.all.lock().ok()?.get(&id).cloned()
    }

    fn add(&self, image: &str, target: Option<String>, vms: Vec<String>) -> Arc<Run> {
        let Ok(mut m) = self.all.lock() else {
            unreachable!("the run table's lock is never held across a panic")
        };
        let id = m.keys().next_back().map_or(1, |k| k + 1);
        let run = Arc::new(Run {
            id,
            image: image.to_string(),
            target,
            vms,
            events: Mutex::new(Vec::new()),
            count: tokio::sync::watch::channel(0).0,
            finished: AtomicBool::new(false),
            lines: AtomicUsize::new(0),
        });
        m.insert(id, run.clone());
        run
    }
}

/// One run to provision: everything the adapter needs, without web types.
pub(crate) struct Job {
    pub vms: Vec<String>,
    pub target: Option<String>,
    pub options: Options,
}

/// A batch event as the page shows it: steps (and the plan's warnings) as the VM's step
/// line, output lines as its log, the outcome as its result. `host_error` is why its
/// server could not be reached.
fn page_event(e: &batch::Event<'_>, host_error: &str) -> Event {
    let (kind, text, step) = match &e.what {
        What::Step(s) => {
            let text = match (s, e.host) {
                (Step::Connect, Some(h)) => format!("connecting to `{h}`"),
                _ => s.describe().to_string(),
            };
            ("step", text, Some(s.name()))
        }
        What::Warning(d) => ("step", d.render(), None),
        What::Started {
            image,
            log,
            local_log,
        } => (
            "step",
            match local_log {
                Some(copy) => format!(
                    "started: image `{image}`, log {} there (local copy: {})",
                    log.display(),
                    copy.display()
                ),
                None => format!("started: image `{image}`, log {}", log.display()),
            },
            Some("started"),
        ),
        What::Line(l) => ("line", l.to_string(), None),
        What::Finished(o) => {
            let (kind, text) = match o {
                Outcome::Provisioned(p) => (
                    "done",
                    format!(
                        "provisioned{} in {:.1} s; config {}; disks {}{}",
                        e.host.map(|h| format!(" on `{h}`")).unwrap_or_default(),
                        p.seconds,
                        p.config.display(),
                        p.disks.join(", "),
                        p.guest_cache
                            .as_ref()
                            .map(|g| format!("; guest cache: {g}"))
                            .unwrap_or_default()
                    ),
                ),
                Outcome::Failed { error, .. } => ("failed", messages(error).join("\n")),
                Outcome::NotStarted => ("failed", "not started: interrupted (Ctrl-C)".into()),
                Outcome::HostNotReached => ("failed", host_error.to_string()),
            };
            (kind, text, Some(o.name()))
        }
    };
    Event {
        vm: e.vm.to_string(),
        kind,
        text,
        step,
    }
}

/// THE adapter between the console and provisioning: the run's VMs as one batch of
/// `provision::batch` (the library the CLI uses), on this machine or on a `[hosts.*]`
/// server, `MAX_PARALLEL` at a time; its typed events become the page's `Event`s, so the
/// page shows each VM's step.
pub(crate) fn provision_vms(ui: &Ui, job: &Job, emit: &(dyn Fn(Event) + Sync)) {
    let fail_all = |e: &anyhow::Error| {
        for vm in &job.vms {
            emit(Event {
                vm: vm.clone(),
                kind: "failed",
                text: messages(e).join("\n"),
                step: None,
            });
        }
    };
    let store = match ui.store() {
        Ok(s) => s,
        Err(e) => return fail_all(&e),
    };
    let ctx = ui.context(None);
    let batch = Batch {
        store: &store,
        context: &ctx,
        options: &job.options,
        arch: None,
        local_log: ui.remote_log,
    };
    let placed: Vec<(String, Option<String>)> = job
        .vms
        .iter()
        .map(|v| (v.clone(), job.target.clone()))
        .collect();
    let prepared = match batch.prepare(&placed, &|e| emit(page_event(e, ""))) {
        Ok(p) => p,
        Err(e) => return fail_all(&e),
    };
    let host_error = prepared
        .host_errors
        .iter()
        .flat_map(messages)
        .collect::<Vec<_>>()
        .join("\n");
    let jobs = job.vms.len().clamp(1, MAX_PARALLEL);
    batch.run(prepared.units, jobs, &|e| emit(page_event(e, &host_error)));
}

/// The customizable values of both files, as the form shows them.
fn customizable(ui: &Ui, img: &Image) -> anyhow::Result<(Vec<Entry>, Vec<Entry>)> {
    let r = resolve::resolve(img, &ui.context(None), &Overrides::default(), false)?;
    let keep = |v: Vec<Entry>| -> Vec<Entry> {
        v.into_iter()
            .filter(|e| e.customizable && !e.computed && e.key != "name")
            .collect()
    };
    Ok((keep(r.image), keep(r.vm)))
}

fn is_secret(e: &Entry) -> bool {
    crate::state::is_secret(&e.key, &e.value.to_text())
}

/// The form, with the values the user typed (never a secret) and each error at its field.
fn form_page(ui: &Ui, name: &str, typed: &[(String, String)], errors: &[String]) -> Response {
    let img = match super::images::load(ui, name) {
        Ok(i) => i,
        Err(e) => {
            let main = html::messages("errors", "This image is broken", &messages(&e));
            return html::page(ui, name, Some(name), &main);
        }
    };
    let (ie, ve) = match customizable(ui, &img) {
        Ok(x) => x,
        Err(e) => {
            let main = html::messages("errors", "The options do not resolve", &messages(&e));
            return html::page(ui, name, Some(name), &main);
        }
    };
    let get = |k: &str| typed.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    let mut placed = vec![false; errors.len()];
    let mut fields = String::new();
    for (prefix, file, entries) in [
        ("img", image::IMAGE_CONF, &ie),
        ("vm", image::VM_TEMPLATE, &ve),
    ] {
        if entries.is_empty() {
            continue;
        }
        fields.push_str(&format!("<fieldset><legend>{file}</legend>"));
        for e in entries {
            let id = format!("p-{prefix}-{}", e.key);
            let field = format!("{prefix}:{}", e.key);
            let needle = format!("`{}`", e.key);
            let mine: Vec<&String> = errors
                .iter()
                .enumerate()
                .filter(|(i, m)| {
                    let hit = m.contains(&needle);
                    if hit {
                        placed[*i] = true;
                    }
                    hit
                })
                .map(|(_, m)| m)
                .collect();
            let err = if mine.is_empty() {
                String::new()
            } else {
                format!(
                    "<pre class=\"field-error\" id=\"{id}-err\">{}</pre>",
                    esc(&mine
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join("\n"))
                )
            };
            let described = if mine.is_empty() {
                String::new()
            } else {
                format!(" aria-invalid=\"true\" aria-describedby=\"{id}-err\"")
            };
            let input = if is_secret(e) {
                // A secret is never sent to the page, not even back after an error.
                format!(
                    "<input id=\"{id}\" name=\"{}\" type=\"password\" autocomplete=\"new-password\" placeholder=\"(unchanged)\"{described}>",
                    esc(&field)
                )
            } else {
                format!(
                    "<input id=\"{id}\" name=\"{}\" value=\"{}\" spellcheck=\"false\"{described}>",
                    esc(&field),
                    esc(get(&field).unwrap_or(&e.value.repr()))
                )
            };
            fields.push_str(&format!(
                "<div class=\"field\"><label for=\"{id}\"><code>{}</code></label>{input}{err}</div>",
                esc(&e.key)
            ));
        }
        fields.push_str("</fieldset>");
    }
    let rest: Vec<String> = errors
        .iter()
        .zip(&placed)
        .filter(|(_, p)| !**p)
        .map(|(m, _)| m.clone())
        .collect();
    let mut targets = String::from("<option value=\"\">this machine</option>");
    let chosen = get("target").unwrap_or("");
    for h in ui.settings.hosts.keys() {
        targets.push_str(&format!(
            "<option value=\"{}\"{}>{} ([hosts.{}])</option>",
            esc(h),
            if h == chosen { " selected" } else { "" },
            esc(h),
            esc(h)
        ));
    }
    let main = format!(
        "<h1>Provision from {}</h1>{}<form method=\"post\" action=\"/images/{}/provision\">{}\
<div class=\"field\"><label for=\"vms\">VM names</label><input id=\"vms\" name=\"vms\" required value=\"{}\" aria-describedby=\"vms-note\" autocomplete=\"off\" spellcheck=\"false\">\
<span class=\"note\" id=\"vms-note\">one or more, separated by spaces or commas</span></div>\
<div class=\"field\"><label for=\"target\">Target</label><select id=\"target\" name=\"target\">{targets}</select></div>\
{fields}<button type=\"submit\" class=\"primary\">Provision</button> <a href=\"/images/{}\">Cancel</a></form>",
        esc(name),
        html::messages("errors", "Not provisioned", &rest),
        seg(name),
        csrf_field(ui),
        esc(get("vms").unwrap_or("")),
        seg(name)
    );
    html::page(ui, &format!("Provision {name}"), Some(name), &main)
}

pub(crate) async fn form(State(ui): State<Shared>, Path(name): Path<String>) -> Response {
    blocking(move || form_page(&ui, &name, &[], &[])).await
}

/// Checks the form as the CLI checks its arguments (by planning every VM, which writes
/// nothing), then starts the run and sends the browser to its page.
pub(crate) async fn start(
    State(ui): State<Shared>,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    blocking(move || {
        let fail = |errors: Vec<String>| {
            // Secrets never go back to the page.
            let typed: Vec<(String, String)> = form
                .iter()
                .filter(|(k, v)| !crate::state::is_secret(k, v))
                .cloned()
                .collect();
            let mut r = form_page(&ui, &name, &typed, &errors);
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        };
        let img = match super::images::load(&ui, &name) {
            Ok(i) => i,
            Err(e) => return fail(messages(&e)),
        };
        let (ie, ve) = match customizable(&ui, &img) {
            Ok(x) => x,
            Err(e) => return fail(messages(&e)),
        };
        let get = |k: &str| {
            form.iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let vms: Vec<String> = get("vms")
            .split([' ', ',', '\t', '\n'])
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut errors = Vec::new();
        if vms.is_empty() {
            errors.push("give at least one VM name".to_string());
        }
        for v in &vms {
            if let Err(m) = crate::store::check_vm_name(v) {
                errors.push(m);
            }
            if vms.iter().filter(|x| *x == v).count() > 1
                && !errors.iter().any(|e| e.contains(v.as_str()))
            {
                errors.push(format!("VM `{v}` is named twice"));
            }
        }
        let target = Some(get("target")).filter(|t| !t.is_empty());
        if let Some(t) = &target
            && !ui.settings.hosts.contains_key(t)
        {
            errors.push(format!("`{t}` is not a [hosts.*] entry of the settings"));
        }
        // Only the values the user changed become overrides (`--set`, `--vm-set`).
        let mut over = Overrides::default();
        for (k, v) in &form {
            let Some((prefix, key)) = k.split_once(':') else {
                continue;
            };
            let v = v.trim();
            let (entries, list) = match prefix {
                "img" => (&ie, &mut over.set),
                "vm" => (&ve, &mut over.vm_set),
                _ => continue,
            };
            match entries.iter().find(|e| e.key == key) {
                Some(e) if is_secret(e) && v.is_empty() => {}
                Some(e) if !is_secret(e) && v == e.value.repr() => {}
                _ => list.push((key.to_string(), v.to_string())),
            }
        }
        let options = Options {
            image: Some(name.clone()),
            overrides: over,
            format: None,
            force: false,
            keep: false,
            timeout: None,
            strict: false,
            start: false,
            autostart: false,
            // A server without the guest cache entry gets this machine's (issue #22).
            seed_from: Some(provision::guest::local_cache_dir(&ui.settings)),
        };
        if errors.is_empty() {
            // The same checks `provision` makes before anything runs: the whole plan for
            // this machine; for a server the values (its paths are checked there).
            match (&target, ui.store(), vms.first()) {
                (None, Ok(store), Some(v)) => {
                    if let Err(e) = provision::plan(v, &store, &ui.context(None), &options) {
                        errors.extend(messages(&e));
                    }
                }
                (Some(_), Ok(_), Some(v)) => {
                    if let Err(d) =
                        resolve::resolve(&img, &ui.context(Some(v)), &options.overrides, false)
                    {
                        errors.extend(d.0.iter().filter(|d| d.is_error()).map(|d| d.render()));
                    }
                }
                (_, Err(e), _) => errors.extend(messages(&e)),
                _ => {}
            }
        }
        if !errors.is_empty() {
            return fail(errors);
        }
        let run = ui.runs.add(&name, target.clone(), vms.clone());
        let job = Job {
            vms,
            target,
            options,
        };
        spawn(ui.clone(), run.clone(), job);
        Redirect::to(&format!("/runs/{}", run.id)).into_response()
    })
    .await
}

/// The run, in a thread of its own: it goes on when the page is closed.
fn spawn(ui: Shared, run: Arc<Run>, job: Job) {
    std::thread::spawn(move || {
        provision_vms(&ui, &job, &|e| run.push(e));
        for vm in &job.vms {
            if run.outcome(vm) == "running" {
                run.push(Event {
                    vm: vm.clone(),
                    kind: "failed",
                    text: "not started: interrupted (Ctrl-C)".into(),
                    step: None,
                });
            }
        }
        run.finish();
    });
}

pub(crate) async fn list(State(ui): State<Shared>) -> Response {
    blocking(move || {
        let runs: Vec<Arc<Run>> = ui
            .runs
            .all
            .lock()
            .map(|m| m.values().rev().cloned().collect())
            .unwrap_or_default();
        let rows: String = runs
            .iter()
            .map(|r| {
                format!(
                    "<tr><td><a href=\"/runs/{}\">run {}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    r.id,
                    r.id,
                    esc(&r.image),
                    esc(r.target.as_deref().unwrap_or("this machine")),
                    r.vms
                        .iter()
                        .map(|v| format!("{} ({})", esc(v), r.outcome(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        let main = format!(
            "<h1>Provisioning runs</h1><p>Runs of this console since it started; a run goes on when its page is closed.</p>\
<table><thead><tr><th scope=\"col\">Run</th><th scope=\"col\">Image</th><th scope=\"col\">Target</th><th scope=\"col\">VMs</th></tr></thead><tbody>{rows}</tbody></table>"
        );
        html::page(&ui, "Runs", None, &main)
    })
    .await
}

pub(crate) async fn page(State(ui): State<Shared>, Path(id): Path<u64>) -> Response {
    blocking(move || {
        let Some(run) = ui.runs.get(id) else {
            return html::error_page(StatusCode::NOT_FOUND, "no such run");
        };
        let vms: String = run
            .vms
            .iter()
            .map(|v| {
                format!(
                    "<section class=\"vm\" data-vm=\"{}\" aria-label=\"VM {}\"><h2>{} <span class=\"state\" role=\"status\">starting</span></h2>\
<p class=\"step\"></p><pre class=\"log\" tabindex=\"0\" aria-label=\"log of {}\"></pre><p class=\"result\"></p></section>",
                    esc(v),
                    esc(v),
                    esc(v),
                    esc(v)
                )
            })
            .collect();
        let main = format!(
            "<h1>Run {} of {}</h1><p>Target: {}. <span id=\"run-state\" role=\"status\">running</span>. The run goes on on the server when this page is closed; reload to reattach.</p>\
<div id=\"run\" data-events=\"/runs/{}/events\">{vms}</div><p><a href=\"/vms\">VMs</a></p>",
            run.id,
            esc(&run.image),
            esc(run.target.as_deref().unwrap_or("this machine")),
            run.id
        );
        html::page(&ui, &format!("Run {}", run.id), Some(&run.image), &main)
    })
    .await
}

/// The run's events, from the first (or after `Last-Event-ID`), then live; `end` when it
/// is over.
pub(crate) async fn events(
    State(ui): State<Shared>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let Some(run) = ui.runs.get(id) else {
        return html::error_page(StatusCode::NOT_FOUND, "no such run");
    };
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(0, |n| n + 1);
    let rx = run.count.subscribe();
    let stream = futures_util::stream::unfold(
        (run, from, rx, false),
        |(run, next, mut rx, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let finished = run.finished.load(Ordering::SeqCst);
                let batch = run.events_from(next);
                if let Some(e) = batch.into_iter().next() {
                    let ev = SseEvent::default()
                        .id(next.to_string())
                        .data(serde_json::to_string(&e).unwrap_or_default());
                    return Some((
                        Ok::<_, std::convert::Infallible>(ev),
                        (run, next + 1, rx, false),
                    ));
                }
                if finished {
                    let ev = SseEvent::default().event("end").data("end");
                    return Some((Ok(ev), (run, next, rx, true)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
