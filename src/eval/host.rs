//! The machine `os.uname()` and `sys.platform` describe: where the VM will run (spec §2.4).

use crate::value::Value;

/// What `os.uname()` answers: the machine the VM will run on (spec §2.4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Host {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

impl Host {
    /// The local machine, with `arch` replacing the machine field when given.
    pub fn local(arch: Option<&str>) -> Host {
        // SAFETY: uname fills the struct it is given; a zeroed utsname is a valid argument.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::uname(&mut u) } == 0;
        let field = |f: &[libc::c_char]| -> String {
            let bytes: Vec<u8> = f
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let mut host = if ok {
            Host {
                sysname: field(&u.sysname),
                nodename: field(&u.nodename),
                release: field(&u.release),
                version: field(&u.version),
                machine: field(&u.machine),
            }
        } else {
            Host {
                sysname: "Linux".into(),
                nodename: "localhost".into(),
                release: String::new(),
                version: String::new(),
                machine: std::env::consts::ARCH.into(),
            }
        };
        if let Some(a) = arch {
            host.machine = a.to_string();
        }
        host
    }

    pub(crate) fn tuple(&self) -> Vec<Value> {
        [
            &self.sysname,
            &self.nodename,
            &self.release,
            &self.version,
            &self.machine,
        ]
        .into_iter()
        .map(|s| Value::Str(s.clone()))
        .collect()
    }

    /// `sys.platform`: Python's lower-case system name.
    pub(crate) fn platform(&self) -> String {
        if self.sysname.eq_ignore_ascii_case("linux") {
            "linux".into()
        } else {
            self.sysname.to_lowercase()
        }
    }
}
