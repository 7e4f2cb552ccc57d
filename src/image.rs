//! One image of the store: both config files parsed and evaluated into a typed model, the
//! option lists (`computed_options`, `customizable_options`), the description and the script.

use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile, Span};
use crate::eval::{self, Evaluated, Limits};
use crate::host::Host;
use crate::syntax::{self, Module};
use crate::value::Value;
use std::path::{Path, PathBuf};

pub const IMAGE_CONF: &str = "image.conf";
pub const VM_TEMPLATE: &str = "vm_conf.template";
pub const PROVISION_SCRIPT: &str = "provision.sh";
pub const DESCRIPTION: &str = "description.htm";

/// Keys that configure convirt itself and are never options a user changes.
pub const OPTION_LISTS: &[&str] = &["computed_options", "customizable_options"];

/// One evaluated config file.
#[derive(Debug, Clone)]
pub struct ConfFile {
    pub source: SourceFile,
    pub module: Module,
    pub values: Evaluated,
    /// This file's own `computed_options`.
    pub computed: Vec<String>,
    /// This file's `customizable_options`, when it has one.
    pub customizable: Option<Vec<String>>,
}

impl ConfFile {
    /// Parses and evaluates a file. Errors come back as diagnostics; warnings ride along.
    pub fn load(path: &Path, host: &Host) -> Result<ConfFile, Diagnostics> {
        let source = SourceFile::read(path)?;
        Self::from_source(source, host)
    }

    pub fn from_source(source: SourceFile, host: &Host) -> Result<ConfFile, Diagnostics> {
        let module = syntax::parse(&source)?;
        let (values, mut diags) = eval::evaluate(&source, &module, host, Limits::default());
        let computed =
            string_list(&source, &values, "computed_options", &mut diags).unwrap_or_default();
        let customizable = string_list(&source, &values, "customizable_options", &mut diags);
        if diags.has_errors() {
            return Err(diags);
        }
        Ok(ConfFile {
            source,
            module,
            values,
            computed,
            customizable,
        })
    }

    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// The options of the file, without the option lists.
    pub fn options(&self) -> impl Iterator<Item = &eval::Binding> {
        self.values
            .bindings
            .iter()
            .filter(|b| !OPTION_LISTS.contains(&b.key.as_str()))
    }

    pub fn site_span(&self, key: &str) -> Option<Span> {
        Some(self.values.binding(key)?.sites.last()?.stmt)
    }
}

fn string_list(
    file: &SourceFile,
    ev: &Evaluated,
    key: &str,
    diags: &mut Diagnostics,
) -> Option<Vec<String>> {
    let b = ev.binding(key)?;
    let items = match &b.value {
        Value::List(v) | Value::Tuple(v) => v
            .iter()
            .map(|x| x.as_str().map(String::from))
            .collect::<Option<Vec<_>>>(),
        _ => None,
    };
    if items.is_none() {
        let span = b.sites.last().map(|s| s.value).unwrap_or_default();
        diags.push(
            Diagnostic::error(format!("`{key}` must be a list of key names"))
                .at(file, span)
                .with_hint(format!("for example `{key} = ['memory', 'vcpus']`")),
        );
    }
    items
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    Pv,
    Hvm,
    Pvh,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Pv => "PV",
            Kind::Hvm => "HVM",
            Kind::Pvh => "PVH",
        })
    }
}

/// A loaded image.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub dir: PathBuf,
    pub image_conf: ConfFile,
    pub vm_template: ConfFile,
}

impl Image {
    /// Loads both files. Problems in either are all reported together.
    pub fn load(name: &str, dir: &Path, host: &Host) -> Result<Image, Diagnostics> {
        let image_conf = ConfFile::load(&dir.join(IMAGE_CONF), host);
        let vm_template = ConfFile::load(&dir.join(VM_TEMPLATE), host);
        match (image_conf, vm_template) {
            (Ok(image_conf), Ok(vm_template)) => Ok(Image {
                name: name.to_string(),
                dir: dir.to_path_buf(),
                image_conf,
                vm_template,
            }),
            (a, b) => {
                let mut d = Diagnostics::default();
                if let Err(e) = a {
                    d.extend(e);
                }
                if let Err(e) = b {
                    d.extend(e);
                }
                Err(d)
            }
        }
    }

    pub fn kind(&self) -> Kind {
        kind_of(&self.vm_template.values, Some(&self.image_conf.values))
    }

    pub fn description_html(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join(DESCRIPTION)).ok()
    }

    pub fn script(&self) -> PathBuf {
        self.dir.join(PROVISION_SCRIPT)
    }
}

/// HVM when the template says `builder = 'hvm'` or `type = 'hvm'`, PVH for `type = 'pvh'`.
/// A value that is just `$NAME` (`type = '$guest_type'`) is that key of `image` (the
/// image.conf values), as provisioning would substitute it.
pub fn kind_of(values: &Evaluated, image: Option<&Evaluated>) -> Kind {
    let value = |k: &str| {
        let v = values.get(k).and_then(Value::as_str)?;
        match v.strip_prefix('$') {
            Some(name) => {
                let name = name
                    .strip_prefix('{')
                    .and_then(|n| n.strip_suffix('}'))
                    .unwrap_or(name);
                image?.get(name).and_then(Value::as_str)
            }
            None => Some(v),
        }
    };
    let is = |want: &str| ["builder", "type"].iter().any(|k| value(k) == Some(want));
    if is("hvm") {
        Kind::Hvm
    } else if is("pvh") {
        Kind::Pvh
    } else {
        Kind::Pv
    }
}

/// The description as plain text for a terminal.
pub fn description_text(html: &str, width: usize) -> String {
    let text = html2text::config::plain()
        .string_from_read(html.as_bytes(), width.max(20))
        .unwrap_or_else(|_| html.to_string());
    let mut out = String::new();
    let mut blank = 0;
    for line in text.lines() {
        let l = line.trim_end();
        if l.is_empty() {
            blank += 1;
            if blank > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(l);
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// The first line of text of the description: its title.
pub fn description_title(html: &str) -> String {
    description_text(html, 200)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_to_text() {
        let html = "<body><span style=\"font-size: 200%\">Linux CD Install</span><br/>Installs <b>Linux</b> from a CD.<ol><li>one</li><li>two</li></ol></body>";
        assert_eq!(description_title(html), "Linux CD Install");
        let t = description_text(html, 80);
        assert!(t.contains("Installs Linux from a CD."), "{t}");
        assert!(t.contains("1. one"), "{t}");
    }

    #[test]
    fn option_lists_must_be_lists_of_names() {
        let f = SourceFile::new("image.conf", "customizable_options = 'x'\n".to_string());
        let e = ConfFile::from_source(f, &Host::local(None)).unwrap_err();
        assert!(
            e.render().contains("`customizable_options` must be a list"),
            "{}",
            e.render()
        );
    }
}
