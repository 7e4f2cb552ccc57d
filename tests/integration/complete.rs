//! Shell completion through bash's own completion machinery: the registration script from
//! `convirt completions bash` is sourced, `COMP_WORDS` is set as bash sets it on Tab, and
//! the real binary answers from a store in a temp dir.

use crate::World;

/// Runs bash's completion for `words` (the last one is the word being completed) and returns
/// the candidates, plus whatever was printed on stderr.
pub(crate) fn complete(w: &World, env: &[(&str, &str)], words: &[&str]) -> (Vec<String>, String) {
    let bin = assert_cmd::cargo::cargo_bin("convirt");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let quoted: Vec<String> = words
        .iter()
        .map(|s| format!("'{}'", s.replace('\'', r"'\''")))
        .collect();
    let script = format!(
        r#"source <(convirt completions bash) || exit 9
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
COMP_TYPE=9
complete -p convirt >/dev/null || exit 8
_clap_complete_convirt convirt "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        words = quoted.join(" ")
    );
    let mut c = std::process::Command::new("bash");
    c.arg("--norc")
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("HOME", w.home())
        .env("XDG_CONFIG_HOME", w.path().join("xdg"))
        .env("PATH", path)
        .current_dir(w.path());
    // The settings file of the world, when the test wrote one (as root the default file is
    // /etc/convirt/convirt.toml, which a test must not touch).
    let cfg = w.path().join("convirt.toml");
    if cfg.exists() {
        c.env("CONVIRT_CONFIG", &cfg);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run bash");
    assert!(o.status.success(), "bash failed: {o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    (
        out.lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A world whose settings file names its store.
fn world_with_settings(extra: &str) -> World {
    let w = World::new();
    w.image("Linux_CD_Install", "", "name = ''\n");
    w.image("Fedora_Core_Install", "", "name = ''\n");
    w.image("_template_", "", "name = ''\n");
    // Not images: the store's shared directories.
    w.write("store/common/functions", "");
    w.write("store/custom_scripts/x.sh", "");
    w.write(
        "convirt.toml",
        &format!("image_store = '{}'\n{extra}", w.store().display()),
    );
    w
}

fn images(list: &[String]) -> Vec<&str> {
    list.iter()
        .map(String::as_str)
        .filter(|s| !s.starts_with('-'))
        .collect()
}

#[test]
fn provision_image_offers_the_store_from_the_settings() {
    let w = world_with_settings("");
    let (got, err) = complete(
        &w,
        &[],
        &["convirt", "provision", "--vm", "a", "--image", ""],
    );
    assert_eq!(
        images(&got),
        ["Fedora_Core_Install", "Linux_CD_Install", "_template_"],
        "{got:?}"
    );
    assert_eq!(err, "");
    let (got, _) = complete(&w, &[], &["convirt", "provision", "--image", "Li"]);
    assert_eq!(got, ["Linux_CD_Install"]);
    // `--image=` completes too.
    let (got, _) = complete(&w, &[], &["convirt", "provision", "--image=Fe"]);
    assert_eq!(got, ["--image=Fedora_Core_Install"]);
}

#[test]
fn image_show_offers_image_names() {
    let w = world_with_settings("");
    let (got, err) = complete(&w, &[], &["convirt", "image", "show", ""]);
    assert_eq!(
        images(&got),
        ["Fedora_Core_Install", "Linux_CD_Install", "_template_"]
    );
    assert_eq!(err, "");
    let (got, _) = complete(&w, &[], &["convirt", "image", "show", "F"]);
    assert_eq!(got, ["Fedora_Core_Install"]);
    let (got, _) = complete(&w, &[], &["convirt", "image", "edit", "L"]);
    assert_eq!(got, ["Linux_CD_Install"]);
}

#[test]
fn store_and_config_typed_on_the_line_are_used() {
    let w = world_with_settings("");
    let other = World::new();
    other.image("Other_Image", "", "name = ''\n");
    let store = other.store();
    let (got, _) = complete(
        &w,
        &[],
        &[
            "convirt",
            "--store",
            store.to_str().unwrap(),
            "image",
            "show",
            "",
        ],
    );
    assert_eq!(images(&got), ["Other_Image"]);
    let cfg = other.write("c.toml", &format!("image_store = '{}'\n", store.display()));
    let (got, _) = complete(
        &w,
        &[],
        &[
            "convirt",
            &format!("--config={}", cfg.display()),
            "image",
            "show",
            "",
        ],
    );
    assert_eq!(images(&got), ["Other_Image"]);
    // The environment's store counts as it does for a real run.
    let (got, _) = complete(
        &w,
        &[("CONVIRT_IMAGE_STORE", store.to_str().unwrap())],
        &["convirt", "image", "show", "O"],
    );
    assert_eq!(got, ["Other_Image"]);
}

#[test]
fn silent_when_the_store_or_settings_cannot_be_read() {
    let w = World::new();
    w.write("convirt.toml", "image_store = '/nonexistent/store'\n");
    let (got, err) = complete(&w, &[], &["convirt", "image", "show", ""]);
    assert!(images(&got).is_empty(), "{got:?}");
    assert_eq!(err, "");
    // Completion never writes the shipped store to the default place (a real run would).
    let w = World::new();
    let root = unsafe { libc::geteuid() } == 0;
    let default = if root {
        std::path::PathBuf::from("/var/cache/convirt/image_store")
    } else {
        w.home().join(".convirt/image_store")
    };
    let existed = default.exists();
    let (got, err) = complete(&w, &[], &["convirt", "provision", "--image", ""]);
    if !existed {
        assert!(images(&got).is_empty(), "{got:?}");
    }
    assert_eq!(err, "");
    assert_eq!(default.exists(), existed, "{}", default.display());
    // A broken settings file: no candidates and no error text on the command line.
    let w = World::new();
    w.write("convirt.toml", "image_store = [\n");
    let (got, err) = complete(&w, &[], &["convirt", "image", "show", ""]);
    assert!(images(&got).is_empty(), "{got:?}");
    assert_eq!(err, "");
}

#[test]
fn format_offers_the_formats() {
    let w = world_with_settings("");
    let (got, _) = complete(&w, &[], &["convirt", "provision", "--format", ""]);
    assert_eq!(got, ["xl", "xm"]);
    let (got, _) = complete(&w, &[], &["convirt", "conf", "eval", "f", "--format", "x"]);
    assert_eq!(got, ["xl", "xm"]);
    // `image pack --format` keeps its own archive formats.
    let (got, _) = complete(&w, &[], &["convirt", "image", "pack", "X", "--format", ""]);
    assert!(got.iter().any(|g| g == "tar.zst"), "{got:?}");
    assert!(!got.iter().any(|g| g == "xm"), "{got:?}");
}

#[test]
fn subcommands_complete() {
    let w = world_with_settings("");
    let (got, _) = complete(&w, &[], &["convirt", "im"]);
    assert_eq!(got, ["image"]);
    let (got, _) = complete(&w, &[], &["convirt", "image", "va"]);
    assert_eq!(got, ["validate"]);
}

#[test]
fn host_offers_the_hosts_of_the_settings() {
    let w = world_with_settings(
        "[hosts.xen1]\naddress = 'xen1.example.org'\n[hosts.xen2]\naddress = '10.0.0.2'\n",
    );
    let (got, err) = complete(&w, &[], &["convirt", "provision", "--host", ""]);
    assert_eq!(got, ["xen1", "xen2"]);
    assert_eq!(err, "");
    let (got, _) = complete(&w, &[], &["convirt", "provision", "--host", "xen2"]);
    assert_eq!(got, ["xen2"]);
}
