//! `convirt ui`: the web console's command line; the server itself is `crate::ui`.

use super::App;
use anyhow::Result;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct UiArgs {
    /// The address and port to listen on (a port of 0 picks a free one)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// TLS certificate (PEM); required with --tls-key for a non-loopback --listen
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub(crate) fn run(app: &App, a: &UiArgs) -> Result<()> {
    let store = app.store()?;
    crate::ui::serve(crate::ui::Config {
        listen: a.listen,
        tls: a.tls_cert.clone().zip(a.tls_key.clone()),
        settings: app.settings.clone(),
        host: app.host.clone(),
        store_root: store.root,
        remote_log: super::hosts::local_log_copy,
    })
}
