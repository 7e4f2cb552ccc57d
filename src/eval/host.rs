//! The machine `os.uname()` and `sys.platform` describe: where the VM will run (spec §2.4).

use crate::value::Value;

/// What `os.uname()` answers: the machine the VM will run on (spec §2.4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
        let [sysname, nodename, release, version, machine] = crate::sys::uname();
        let mut host = Host {
            sysname,
            nodename,
            release,
            version,
            machine,
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
