//! The image pages: home, an image (sanitised description, options), Edit Settings (as
//! `image edit`), Create Like (as `image create-like`), Pack (download) and Import (upload).

use super::html::{self, csrf_field, esc, seg};
use super::{Shared, Ui, blocking, messages, security};
use crate::edit;
use crate::image::{self, Image};
use crate::resolve::{self, Entry, Overrides};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, body::Bytes};

type Fields = Vec<(String, String)>;

pub(crate) async fn home(State(ui): State<Shared>) -> Response {
    blocking(move || {
        let items = html::nav_items(&ui).unwrap_or_default();
        let rows: String = items
            .iter()
            .map(|i| {
                format!(
                    "<tr><td><a href=\"/images/{}\">{}</a></td><td>{}</td></tr>",
                    seg(&i.name),
                    esc(&i.name),
                    match &i.broken {
                        Some(b) => format!("<span class=\"bad\">broken: {}</span>", esc(b)),
                        None => esc(&i.title),
                    }
                )
            })
            .collect();
        let main = format!(
            "<h1>Image store</h1><p class=\"path\">{}</p>\
<table><caption>Images</caption><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Title</th></tr></thead><tbody>{rows}</tbody></table>",
            esc(&ui.store_root.display().to_string())
        );
        html::page(&ui, "Images", None, &main)
    })
    .await
}

pub(crate) fn load(ui: &Ui, name: &str) -> anyhow::Result<Image> {
    let store = ui.store()?;
    let dir = store.image_dir(name)?;
    Ok(Image::load(name, &dir, &ui.host)?)
}

fn is_secret(e: &Entry) -> bool {
    crate::state::is_secret(&e.key, &e.value.to_text())
}

fn shown_value(e: &Entry) -> String {
    let repr = e.value.repr();
    if is_secret(e) {
        crate::state::MASK.to_string()
    } else {
        repr
    }
}

fn options_table(caption: &str, entries: &[Entry]) -> String {
    let rows: String = entries
        .iter()
        .map(|e| {
            let mut marks = Vec::new();
            if e.computed {
                marks.push("<span class=\"tag computed\">computed</span>");
            }
            if e.customizable {
                marks.push("<span class=\"tag custom\">customizable</span>");
            }
            format!(
                "<tr><th scope=\"row\"><code>{}</code></th><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&e.key),
                esc(&shown_value(e)),
                marks.join(" "),
                esc(&e.origin.to_string())
            )
        })
        .collect();
    format!(
        "<div class=\"scroll\"><table class=\"options\"><caption>{}</caption><thead><tr><th scope=\"col\">Key</th><th scope=\"col\">Value</th><th scope=\"col\">Marks</th><th scope=\"col\">From</th></tr></thead><tbody>{rows}</tbody></table></div>",
        esc(caption)
    )
}

fn actions(name: &str) -> String {
    let n = seg(name);
    format!(
        "<ul class=\"actions\"><li><a class=\"button primary\" href=\"/images/{n}/provision\">Provision</a></li>\
<li><a class=\"button\" href=\"/images/{n}/edit\">Edit Settings</a></li>\
<li><a class=\"button\" href=\"/images/{n}/create-like\">Create Like</a></li>\
<li><a class=\"button\" href=\"/images/{n}/pack\" download>Pack (.tar.gz)</a></li></ul>"
    )
}

pub(crate) async fn show(State(ui): State<Shared>, Path(name): Path<String>) -> Response {
    blocking(move || {
        let img = match load(&ui, &name) {
            Ok(i) => i,
            Err(e) => {
                let main = format!(
                    "<h1>{}</h1>{}",
                    esc(&name),
                    html::messages("errors", "This image is broken", &messages(&e))
                );
                return html::page(&ui, &name, Some(&name), &main);
            }
        };
        let resolved = resolve::resolve(&img, &ui.context(None), &Overrides::default(), false);
        let desc = img
            .description_html()
            .map(|h| security::sanitise(&h))
            .unwrap_or_else(|| "<p>(no description.htm)</p>".into());
        let options = match &resolved {
            Ok(r) => format!(
                "{}{}{}",
                html::messages(
                    "warnings",
                    "Warnings",
                    &r.warnings.0.iter().map(|d| d.render()).collect::<Vec<_>>()
                ),
                options_table(image::IMAGE_CONF, &r.image),
                options_table(image::VM_TEMPLATE, &r.vm)
            ),
            Err(d) => html::messages(
                "errors",
                "The options do not resolve",
                &d.0.iter().map(|d| d.render()).collect::<Vec<_>>(),
            ),
        };
        let main = format!(
            "<h1>{} <small>({}{})</small></h1><p class=\"path\">{}</p>{}\
<section class=\"description\" aria-label=\"Description\">{desc}</section><h2>Options</h2>{options}",
            esc(&img.name),
            img.kind(),
            if crate::store::is_template_name(&img.name) {
                ", template"
            } else {
                ""
            },
            esc(&img.dir.display().to_string()),
            actions(&img.name)
        );
        html::page(&ui, &img.name, Some(&img.name), &main)
    })
    .await
}

/// The tabs of Edit Settings, as ConVirt's dialog grouped the VM config.
pub(crate) const TABS: &[&str] = &["General", "Disks", "Network", "Miscellaneous"];

pub(crate) fn tab_of(key: &str) -> &'static str {
    const GENERAL: &[&str] = &[
        "name",
        "memory",
        "maxmem",
        "vcpus",
        "cpus",
        "kernel",
        "ramdisk",
        "builder",
        "type",
        "bootloader",
        "bootargs",
        "extra",
        "root",
        "on_poweroff",
        "on_reboot",
        "on_crash",
        "uuid",
        "image_name",
    ];
    let k = key.to_ascii_lowercase();
    if GENERAL.contains(&k.as_str()) {
        "General"
    } else if k.contains("disk") || k.contains("cdrom") || k == "boot" || k.starts_with("hd") {
        "Disks"
    } else if k.contains("vif") || k.contains("net") || k.contains("bridge") || k.contains("mac") {
        "Network"
    } else {
        "Miscellaneous"
    }
}

/// Both files' own assignments (values as written, not substituted), for Edit Settings.
fn file_entries(ui: &Ui, img: &Image) -> (Vec<Entry>, Vec<Entry>) {
    let ic = resolve::computed_keys(&img.image_conf, &ui.settings);
    let vc = resolve::computed_keys(&img.vm_template, &ui.settings);
    (
        resolve::file_entries(&img.image_conf, &ic, false),
        resolve::file_entries(&img.vm_template, &vc, true),
    )
}

#[derive(serde::Deserialize)]
pub(crate) struct TabQuery {
    tab: Option<String>,
}

fn edit_page(ui: &Ui, name: &str, tab: &str, notes: &[String], errors: &[String]) -> Response {
    let img = match load(ui, name) {
        Ok(i) => i,
        Err(e) => {
            let main = html::messages("errors", "This image is broken", &messages(&e));
            return html::page(ui, name, Some(name), &main);
        }
    };
    let (ie, ve) = file_entries(ui, &img);
    let tabs: String = TABS
        .iter()
        .map(|t| {
            format!(
                "<li><a href=\"/images/{}/edit?tab={t}\"{}>{t}</a></li>",
                seg(name),
                if *t == tab {
                    " aria-current=\"page\""
                } else {
                    ""
                }
            )
        })
        .collect();
    let mut fields = String::new();
    for (prefix, file, entries) in [
        ("img", image::IMAGE_CONF, &ie),
        ("vm", image::VM_TEMPLATE, &ve),
    ] {
        for e in entries.iter().filter(|e| tab_of(&e.key) == tab) {
            let id = format!("f-{prefix}-{}", e.key);
            let editable = e.customizable && !e.computed;
            let note = if e.computed {
                "computed for the target host: read-only"
            } else if !e.customizable {
                "not in customizable_options: read-only"
            } else {
                "customizable"
            };
            fields.push_str(&format!(
                "<div class=\"field{}\"><label for=\"{id}\"><code>{}</code> <span class=\"file\">{file}</span></label>\
<input id=\"{id}\" name=\"{prefix}:{}\" {}{} aria-describedby=\"{id}-note\" spellcheck=\"false\">\
<span class=\"note\" id=\"{id}-note\">{note}</span></div>",
                if editable { "" } else { " readonly" },
                esc(&e.key),
                esc(&e.key),
                // A secret is never sent to the page: empty keeps it.
                if is_secret(e) {
                    "type=\"password\" autocomplete=\"new-password\" placeholder=\"(unchanged)\"".to_string()
                } else {
                    format!("value=\"{}\"", esc(&e.value.repr()))
                },
                if editable { "" } else { " readonly aria-readonly=\"true\"" },
            ));
        }
    }
    if fields.is_empty() {
        fields = "<p>No values in this tab.</p>".into();
    }
    let main = format!(
        "<h1>Edit Settings: {}</h1>{}{}<nav class=\"tabs\" aria-label=\"Settings tabs\"><ul>{tabs}</ul></nav>\
<form method=\"post\" action=\"/images/{}/edit?tab={tab}\">{}{fields}\
<p class=\"hint\">Values are Python literals (<code>512</code>, <code>'text'</code>, <code>['a', 'b']</code>); plain text is taken as a string. Comments and layout of the files are kept.</p>\
<button type=\"submit\" class=\"primary\">Save</button> <a href=\"/images/{}\">Back to the image</a></form>",
        esc(name),
        html::messages("notes", "Saved", notes),
        html::messages("errors", "Not saved", errors),
        seg(name),
        csrf_field(ui),
        seg(name),
    );
    html::page(ui, &format!("Edit {name}"), Some(name), &main)
}

impl TabQuery {
    /// The tab asked for; `General` when none or an unknown one.
    fn tab(&self) -> &'static str {
        self.tab
            .as_deref()
            .and_then(|t| TABS.iter().find(|x| **x == t))
            .copied()
            .unwrap_or("General")
    }
}

pub(crate) async fn edit_form(
    State(ui): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<TabQuery>,
) -> Response {
    blocking(move || {
        let tab = q.tab();
        edit_page(&ui, &name, tab, &[], &[])
    })
    .await
}

pub(crate) async fn edit(
    State(ui): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<TabQuery>,
    Form(form): Form<Fields>,
) -> Response {
    blocking(move || {
        let tab = q.tab();
        let (status, notes, errors) = match apply_edit(&ui, &name, &form) {
            Ok(n) => (StatusCode::OK, n, vec![]),
            Err((s, e)) => (s, vec![], e),
        };
        let mut res = edit_page(&ui, &name, tab, &notes, &errors);
        *res.status_mut() = status;
        res
    })
    .await
}

/// The changed values of the form, refused whole when one is not customizable.
fn apply_edit(
    ui: &Ui,
    name: &str,
    form: &Fields,
) -> Result<Vec<String>, (StatusCode, Vec<String>)> {
    let bad = |e: anyhow::Error| (StatusCode::UNPROCESSABLE_ENTITY, messages(&e));
    let img = load(ui, name).map_err(bad)?;
    let (ie, ve) = file_entries(ui, &img);
    let mut req = edit::Request {
        image: vec![],
        vm: vec![],
        force: false,
    };
    let mut refused = Vec::new();
    for (field, value) in form {
        let Some((prefix, key)) = field.split_once(':') else {
            continue;
        };
        let (entries, list, file) = match prefix {
            "img" => (&ie, &mut req.image, image::IMAGE_CONF),
            "vm" => (&ve, &mut req.vm, image::VM_TEMPLATE),
            _ => continue,
        };
        let Some(e) = entries.iter().find(|e| e.key == key) else {
            refused.push(format!("`{key}` is not a value of {file}"));
            continue;
        };
        if value.trim() == e.value.repr() || (is_secret(e) && value.is_empty()) {
            continue;
        }
        if e.computed || !e.customizable {
            refused.push(format!(
                "`{key}` in {file} is not customizable (customizable_options): it cannot be changed here"
            ));
            continue;
        }
        list.push(edit::Change::Set(
            key.to_string(),
            resolve::parse_cli_value(value.trim()),
        ));
    }
    if !refused.is_empty() {
        return Err((StatusCode::FORBIDDEN, refused));
    }
    if req.image.is_empty() && req.vm.is_empty() {
        return Ok(vec!["nothing changed".into()]);
    }
    let edits = edit::plan_image(&img.dir, &img.dir, &req, &ui.settings, &ui.host)
        .map_err(|e| bad(e.into()))?;
    edit::write_image(&img.dir, &edits).map_err(|e| bad(e.into()))?;
    // A secret's old and new values stay out of the page.
    let secret = |file: &str, key: &str| {
        let entries = if file == image::IMAGE_CONF { &ie } else { &ve };
        entries.iter().any(|e| e.key == key && is_secret(e)) || crate::state::is_secret(key, "")
    };
    Ok(edits
        .iter()
        .flat_map(|e| {
            e.changes.iter().map(move |c| {
                let what = if secret(e.file, &c.key) {
                    format!("{}: changed (the value is not shown)", c.key)
                } else {
                    c.summary()
                };
                format!("{}:{}: {what}", e.file, c.line)
            })
        })
        .collect())
}

fn create_like_page(ui: &Ui, src: &str, new: &str, title: &str, errors: &[String]) -> Response {
    let main = format!(
        "<h1>Create Like: {}</h1>{}<form method=\"post\" action=\"/images/{}/create-like\">{}\
<div class=\"field\"><label for=\"new\">New image name</label><input id=\"new\" name=\"new\" required value=\"{}\" autocomplete=\"off\"></div>\
<div class=\"field\"><label for=\"title\">Description title (optional)</label><input id=\"title\" name=\"title\" value=\"{}\"></div>\
<button type=\"submit\" class=\"primary\">Create</button> <a href=\"/images/{}\">Cancel</a></form>",
        esc(src),
        html::messages("errors", "Not created", errors),
        seg(src),
        csrf_field(ui),
        esc(new),
        esc(title),
        seg(src)
    );
    html::page(ui, &format!("Create like {src}"), Some(src), &main)
}

pub(crate) async fn create_like_form(
    State(ui): State<Shared>,
    Path(name): Path<String>,
) -> Response {
    blocking(move || create_like_page(&ui, &name, "", "", &[])).await
}

pub(crate) async fn create_like(
    State(ui): State<Shared>,
    Path(src): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    blocking(move || {
        let get = |k: &str| {
            form.iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let (new, title) = (get("new"), get("title"));
        let result = ui.store().and_then(|store| {
            let req = edit::Request {
                image: vec![],
                vm: vec![],
                force: false,
            };
            crate::create_like::create_like(
                &store,
                &src,
                &new,
                &req,
                (!title.is_empty()).then_some(title.as_str()),
                &ui.settings,
                &ui.host,
            )
            .map_err(anyhow::Error::from)
        });
        match result {
            Ok(made) => Redirect::to(&format!("/images/{}", seg(&made.name))).into_response(),
            Err(e) => {
                let mut r = create_like_page(&ui, &src, &new, &title, &messages(&e));
                *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                r
            }
        }
    })
    .await
}

/// Packs one image into a temporary tar.gz and sends it (as `image pack`).
pub(crate) async fn pack(State(ui): State<Shared>, Path(name): Path<String>) -> Response {
    blocking(move || {
        let made = (|| -> anyhow::Result<Vec<u8>> {
            let store = ui.store()?;
            store.image_dir(&name)?;
            let tmp = tempfile::tempdir()?;
            let out = tmp.path().join("pack.tar.gz");
            let epoch = crate::archive::source_date_epoch(
                std::env::var("SOURCE_DATE_EPOCH").ok().as_deref(),
            )?;
            crate::archive::pack(
                &store,
                &crate::archive::PackOptions {
                    images: vec![name.clone()],
                    output: Some(out.clone()),
                    format: Some(crate::archive::Format::TarGz),
                    force: true,
                    source_date_epoch: epoch,
                    progress: false,
                },
            )?;
            Ok(std::fs::read(&out)?)
        })();
        match made {
            Ok(bytes) => (
                [
                    (header::CONTENT_TYPE, "application/gzip".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{}.tar.gz\"", seg(&name)),
                    ),
                ],
                bytes,
            )
                .into_response(),
            Err(e) => {
                let main = html::messages("errors", "Not packed", &messages(&e));
                let mut r = html::page(&ui, &name, Some(&name), &main);
                *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                r
            }
        }
    })
    .await
}

pub(crate) async fn import_form(State(ui): State<Shared>) -> Response {
    blocking(move || {
        let main = "<h1>Import images</h1>\
<p>An archive made by <code>convirt image pack</code> (.tar.gz, .tar.zst or .deb). It is checked as <code>convirt image import</code> checks it; existing images are not replaced.</p>\
<form id=\"import\" method=\"post\" action=\"/import\" enctype=\"application/octet-stream\">\
<div class=\"field\"><label for=\"archive\">Archive</label><input id=\"archive\" name=\"archive\" type=\"file\" required accept=\".gz,.tgz,.zst,.deb\"></div>\
<button type=\"submit\" class=\"primary\">Import</button></form>\
<output id=\"import-result\" for=\"archive\" aria-live=\"polite\"></output>";
        html::page(&ui, "Import", None, main)
    })
    .await
}

/// The upload, sent by the page's script as the raw body with the CSRF token in a header.
pub(crate) async fn import(State(ui): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    blocking(move || {
        let name = headers
            .get("x-archive-name")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("upload.tar.gz");
        // Only the format suffix of the browser's file name is used.
        let suffix = [".tar.gz", ".tgz", ".tar.zst", ".deb"]
            .into_iter()
            .find(|s| name.ends_with(s))
            .unwrap_or(".tar.gz");
        let result = (|| -> anyhow::Result<String> {
            let store = ui.store()?;
            let tmp = tempfile::tempdir()?;
            let path = tmp.path().join(format!("upload{suffix}"));
            std::fs::write(&path, &body)?;
            let report = crate::archive::import(
                &store,
                &path,
                &ui.host,
                &crate::archive::ImportOptions {
                    force: false,
                    progress: false,
                    max_size: crate::archive::DEFAULT_MAX_SIZE,
                    expect: None,
                },
            )?;
            let mut text = String::new();
            for w in report.warnings.0.iter() {
                text.push_str(&w.render());
                text.push('\n');
            }
            for i in &report.images {
                text.push_str(&format!(
                    "imported `{}`{}\n",
                    i.name,
                    if i.verified {
                        ""
                    } else {
                        " (no manifest: not verified)"
                    }
                ));
            }
            Ok(text)
        })();
        match result {
            Ok(t) => (StatusCode::OK, t).into_response(),
            Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, messages(&e).join("\n")).into_response(),
        }
    })
    .await
}
