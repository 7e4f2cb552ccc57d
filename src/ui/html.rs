//! The page frame: the header, the image navigation on the left, the main part. Text goes
//! through `esc` everywhere; the only unescaped markup is the sanitised description.

use super::Ui;
use crate::image::{self, Image};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A path segment, percent-encoded.
pub(crate) fn seg(s: &str) -> String {
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

/// One image of the navigation (as `image list`).
pub(crate) struct NavItem {
    pub name: String,
    pub title: String,
    pub broken: Option<String>,
}

pub(crate) fn nav_items(ui: &Ui) -> Result<Vec<NavItem>, String> {
    let store = ui.store().map_err(|e| format!("{e:#}"))?;
    let entries = store
        .entries()
        .map_err(|e| format!("cannot read image store `{}`: {e}", store.root.display()))?;
    Ok(entries
        .into_iter()
        .map(|e| match Image::load(&e.name, &e.dir, &ui.host) {
            Ok(img) => NavItem {
                title: img
                    .description_html()
                    .map(|h| image::description_title(&h))
                    .unwrap_or_default(),
                name: e.name,
                broken: None,
            },
            Err(d) => NavItem {
                name: e.name,
                title: String::new(),
                broken: Some(d.summary()),
            },
        })
        .collect())
}

/// A whole page. `current` is the image shown, to mark it in the navigation.
pub(crate) fn page(ui: &Ui, title: &str, current: Option<&str>, main: &str) -> Response {
    let mut nav = String::new();
    match nav_items(ui) {
        Ok(items) => {
            for i in items {
                let here = if current == Some(i.name.as_str()) {
                    " aria-current=\"page\""
                } else {
                    ""
                };
                match &i.broken {
                    Some(why) => nav.push_str(&format!(
                        "<li class=\"broken\"><a href=\"/images/{}\"{here}>{}</a> <span class=\"why\">broken: {}</span></li>",
                        seg(&i.name),
                        esc(&i.name),
                        esc(why)
                    )),
                    None => nav.push_str(&format!(
                        "<li><a href=\"/images/{}\"{here} title=\"{}\">{}</a></li>",
                        seg(&i.name),
                        esc(&i.title),
                        esc(&i.name)
                    )),
                }
            }
        }
        Err(e) => nav.push_str(&format!("<li class=\"broken\">{}</li>", esc(&e))),
    }
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"csrf-token\" content=\"{csrf}\">\
<title>{title} · convirt</title><link rel=\"stylesheet\" href=\"/static/style.css\">\
<script src=\"/static/app.js\" defer></script></head><body>\
<a class=\"skip\" href=\"#main\">Skip to content</a>\
<header><a class=\"brand\" href=\"/\">convirt</a><nav aria-label=\"Sections\"><ul>\
<li><a href=\"/\">Images</a></li><li><a href=\"/vms\">VMs</a></li>\
<li><a href=\"/runs\">Runs</a></li><li><a href=\"/import\">Import</a></li></ul></nav></header>\
<div class=\"frame\"><nav class=\"images\" aria-label=\"Images\"><h2>Images</h2><ul>{nav}</ul></nav>\
<main id=\"main\" tabindex=\"-1\">{main}</main></div></body></html>",
        csrf = ui.secrets.csrf,
        title = esc(title),
    );
    Html(body).into_response()
}

/// The hidden CSRF field of every form.
pub(crate) fn csrf_field(ui: &Ui) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        ui.secrets.csrf
    )
}

/// A list of messages (errors or notes) in a box.
pub(crate) fn messages(class: &str, heading: &str, msgs: &[String]) -> String {
    if msgs.is_empty() {
        return String::new();
    }
    let items: String = msgs
        .iter()
        .map(|m| format!("<li><pre>{}</pre></li>", esc(m)))
        .collect();
    format!(
        "<section class=\"{class}\" role=\"alert\"><h2>{}</h2><ul>{items}</ul></section>",
        esc(heading)
    )
}

/// A page for refused or failed requests, without the frame (it may be shown before any
/// session exists).
pub(crate) fn error_page(status: StatusCode, why: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · convirt</title>\
<link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><main class=\"alone\"><h1>{}</h1><p>{}</p></main></body></html>",
            status.as_u16(),
            status.as_u16(),
            esc(why)
        )),
    )
        .into_response()
}
