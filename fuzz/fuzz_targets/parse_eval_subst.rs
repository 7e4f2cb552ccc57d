//! Fuzzes the config language end to end through the library API: bytes are read as a
//! config file (UTF-8 check, BOM, CRLF), parsed and checked against the dialect, evaluated
//! with the default bounds, and every value substituted. Nothing may panic, hang or exhaust
//! memory; diagnostics are rendered so their spans are exercised too.

#![no_main]

use convirt::diagnostic::SourceFile;
use convirt::eval::{self, Limits};
use convirt::host::Host;
use convirt::subst::{self, Var, Vars};
use convirt::syntax;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let file = match SourceFile::from_bytes(Path::new("vm_conf.template"), data.to_vec()) {
        Ok(f) => f,
        Err(d) => {
            let _ = d.render();
            return;
        }
    };
    let module = match syntax::parse(&file) {
        Ok(m) => m,
        Err(d) => {
            let _ = d.render();
            return;
        }
    };
    let host = Host {
        sysname: "Linux".into(),
        nodename: "xen1".into(),
        release: "6.1.0".into(),
        version: "#1 SMP".into(),
        machine: "x86_64".into(),
    };
    let (values, diags) = eval::evaluate(&file, &module, &host, Limits::default());
    let _ = diags.render();
    let mut vars = Vars::default();
    vars.set_text("VM_NAME", "web1");
    vars.set_text("VM_DISKS_DIR", "/srv/xen");
    vars.set("AUTOGEN_MAC", Var::FreshMac);
    for b in &values.bindings {
        let mut unresolved = Vec::new();
        let v = subst::substitute(&b.value, &vars, &mut unresolved);
        let _ = v.repr();
        let _ = v.script_literal();
    }
});
