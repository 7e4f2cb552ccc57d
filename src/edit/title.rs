//! The title of description.htm: the first shown text, replaced byte for byte.

/// Checks a `--title`: one line of text.
pub fn check_title(title: &str) -> Result<(), String> {
    if title.trim().is_empty() {
        return Err("the title is empty".into());
    }
    if title.chars().any(char::is_control) {
        return Err("the title must be one line of text without control characters".into());
    }
    Ok(())
}

/// Elements whose content is not shown as the description's text.
const HIDDEN_ELEMENTS: &[&str] = &["head", "title", "script", "style"];

/// Replaces the description's title (`create-like --title`): the first text node that is
/// shown, i.e. the first run of non-blank text outside tags, comments and the `head`,
/// `title`, `script` and `style` elements. The whitespace around that text and every other
/// byte stay as they were. A description without any text gets the title as a heading after
/// its `<body>` tag (or at the start). The title is HTML-escaped; in a file that is not UTF-8
/// its non-ASCII characters are written as character references.
pub fn set_description_title(html: &[u8], title: &str) -> Vec<u8> {
    let utf8 = std::str::from_utf8(html).is_ok();
    let mut escaped = String::new();
    for c in title.trim().chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c if !utf8 && !c.is_ascii() => escaped.push_str(&format!("&#x{:x};", c as u32)),
            c => escaped.push(c),
        }
    }
    let splice = |start: usize, end: usize, text: &str| {
        let mut out = html[..start].to_vec();
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&html[end..]);
        out
    };
    match first_text(html) {
        Some((start, end)) => splice(start, end, &escaped),
        None => {
            let heading = format!("<span style=\"font-size: 200%\">{escaped}</span><br/>");
            let at = find_ci(html, b"<body", 0)
                .and_then(|b| html[b..].iter().position(|&c| c == b'>').map(|i| b + i + 1))
                .unwrap_or(0);
            splice(at, at, &heading)
        }
    }
}

/// The byte range of the first shown text (trimmed of whitespace), if any.
fn first_text(html: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < html.len() {
        if html[i] == b'<' {
            if html[i..].starts_with(b"<!--") {
                i = find(html, b"-->", i + 4).map_or(html.len(), |e| e + 3);
                continue;
            }
            let end = tag_end(html, i);
            let closing = html.get(i + 1) == Some(&b'/');
            let name: String = html
                .get(i + 1 + usize::from(closing)..end)
                .unwrap_or_default()
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .map(|c| c.to_ascii_lowercase() as char)
                .collect();
            i = end;
            if !closing && HIDDEN_ELEMENTS.contains(&name.as_str()) {
                let close = format!("</{name}");
                i = find_ci(html, close.as_bytes(), i).unwrap_or(html.len());
            }
            continue;
        }
        let end = html[i..]
            .iter()
            .position(|&c| c == b'<')
            .map_or(html.len(), |p| i + p);
        let run = &html[i..end];
        if let Some(first) = run.iter().position(|c| !c.is_ascii_whitespace()) {
            let last = run
                .iter()
                .rposition(|c| !c.is_ascii_whitespace())
                .unwrap_or(first);
            return Some((i + first, i + last + 1));
        }
        i = end;
    }
    None
}

/// The offset just past the `>` closing the tag that starts at `start`, quotes respected.
fn tag_end(html: &[u8], start: usize) -> usize {
    let mut quote = None;
    for (j, &c) in html.iter().enumerate().skip(start + 1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'>') => return j + 1,
            _ => {}
        }
    }
    html.len()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn find_ci(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| from + p)
}
