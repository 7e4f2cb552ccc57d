//! Host facts (issue #17: they leave `eval`): the machine a VM will run on, as `uname(2)`
//! describes it (spec §2.4), this machine's own or a server's (`convirt __serve` reports
//! them). The evaluator receives them as a value and shows them as `os.uname()` and
//! `sys.platform`; planning, publishing and pulling read the architecture. A leaf above `sys`.

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
}
