//! Image validation (spec §9.2): every problem of an image, collected, for `image validate`.

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::image::{self, Image};
use crate::render;
use crate::resolve::{self, Context, Overrides};
use crate::store::Store;
use crate::value::Value;

/// The problems of one image (spec §9.2): its files, script, description, custom script
/// directories, variables and `xl` rendering.
pub(crate) fn validate_one(ctx: &Context, store: &Store, name: &str, strict: bool) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let dir = match store.image_dir(name) {
        Ok(d) => d,
        Err(d) => return d.into(),
    };
    let img = match Image::load(name, &dir, &ctx.host) {
        Ok(i) => i,
        Err(d) => {
            diags.extend(d);
            return diags;
        }
    };
    let script = img.script();
    match std::fs::metadata(&script) {
        Err(_) => diags.push(
            Diagnostic::error(format!("`{}` is missing", image::PROVISION_SCRIPT))
                .in_file(&script)
                .with_hint("every image needs a provision.sh; copy one from `example/`"),
        ),
        Ok(m) => {
            use std::os::unix::fs::PermissionsExt;
            if m.permissions().mode() & 0o111 == 0 {
                diags.push(
                    Diagnostic::error(format!("`{}` is not executable", image::PROVISION_SCRIPT))
                        .in_file(&script)
                        .with_hint(format!("run `chmod +x {}`", script.display())),
                );
            }
        }
    }
    // What a provisioning run would refuse to execute (crate::trust).
    let customs: Vec<std::path::PathBuf> = {
        let resolved = resolve::resolve(&img, ctx, &Overrides::default(), false).ok();
        resolved
            .and_then(|r| crate::custom_scripts::custom_dirs(&img, store, &r).ok())
            .unwrap_or_default()
            .iter()
            .flat_map(|(_, d)| crate::custom_scripts::scripts_in(d))
            .collect()
    };
    for u in crate::trust::check_run(&store.root, &dir, &customs, crate::sys::euid()) {
        diags.push(u.diagnostic(false));
    }
    if !dir.join(image::DESCRIPTION).exists() {
        diags.push(
            Diagnostic::warning(format!("`{}` is missing", image::DESCRIPTION))
                .in_file(&dir.join(image::DESCRIPTION)),
        );
    }
    if let Some(v) = img.image_conf.values.get("custom_list") {
        let names: Vec<String> = match v {
            Value::List(items) | Value::Tuple(items) => items.iter().map(Value::to_text).collect(),
            Value::Str(s) => s.split_whitespace().map(String::from).collect(),
            _ => vec![],
        };
        for n in names {
            let found = [
                dir.join("custom_scripts").join(&n),
                store.root.join("custom_scripts").join(&n),
            ]
            .iter()
            .any(|p| p.is_dir());
            let bad_name = n.contains('/') || n == ".." || n == ".";
            if bad_name || !found {
                let d = Diagnostic::error(format!(
                    "custom script directory `{n}` not found in `{}/custom_scripts` nor the store's `custom_scripts`",
                    name
                ));
                let d = match img.image_conf.site_span("custom_list") {
                    Some(s) => d.at(&img.image_conf.source, s),
                    None => d.in_file(img.image_conf.path()),
                };
                diags.push(d);
            }
        }
    }
    let ctx = Context {
        vm_name: Some("validate-vm".into()),
        ..ctx.clone()
    };
    match resolve::resolve(&img, &ctx, &Overrides::default(), strict) {
        Ok(r) => {
            diags.extend(r.warnings.clone());
            diags.extend(crate::disk_values::check(&img, &r));
            let disks = crate::disks::plan(&r);
            diags.extend(crate::disk_values::missing_sources(&disks, &r, false));
            let req = render::Request {
                entries: &r.vm,
                template: &img.vm_template,
                image: &img.name,
                extra: vec![],
                xl_template: render::store_xl_template(&store.root),
            };
            if let Err(d) = render::check_xl(&req) {
                diags.extend(d);
            }
        }
        Err(d) => diags.extend(d),
    }
    diags
}

/// Validates images on every core (each image is independent); the results come back in
/// the order of `names`.
pub(crate) fn validate_all(
    ctx: &Context,
    store: &Store,
    names: &[String],
    strict: bool,
) -> Vec<Diagnostics> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(names.len());
    if workers <= 1 {
        return names
            .iter()
            .map(|n| validate_one(ctx, store, n, strict))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Diagnostics>> = names.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(name) = names.get(i) else {
                            break;
                        };
                        done.push((i, validate_one(ctx, store, name, strict)));
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(done) => {
                    for (i, d) in done {
                        results[i] = Some(d);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    results.into_iter().map(Option::unwrap_or_default).collect()
}
