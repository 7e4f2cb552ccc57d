//! `convirt ui`: the ConVirt console in a browser (docs/ui.md). An axum server (HTTPS with
//! `--tls-cert`/`--tls-key`, `tls`) on a
//! current-thread tokio runtime; every page calls the same library functions as the CLI, on
//! the blocking pool. `security` guards every request (token, cookie, CSRF, Origin, CSP).

mod html;
mod images;
mod runs;
mod security;
mod tls;
mod vms;

use crate::host::Host;
use crate::settings::Settings;
use crate::store::Store;
use anyhow::{Context as _, Result};
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What `convirt ui` was asked to serve.
pub(crate) struct Config {
    pub listen: SocketAddr,
    /// `--tls-cert`, `--tls-key`.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub settings: Settings,
    pub host: Host,
    pub store_root: PathBuf,
    /// Where the local copy of a managed server's log goes (the CLI's rule).
    pub remote_log: RemoteLog,
}

pub(crate) type RemoteLog = fn(&Settings, &str, &crate::provision::Plan) -> PathBuf;

/// The server's state, shared by every request.
pub(crate) struct Ui {
    pub settings: Settings,
    pub host: Host,
    pub store_root: PathBuf,
    pub remote_log: RemoteLog,
    pub secrets: security::Secrets,
    pub runs: runs::Runs,
}

impl Ui {
    /// The store, opened anew for each request: images change under a running console.
    fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.store_root)?.0)
    }

    fn context(&self, vm: Option<&str>) -> crate::resolve::Context {
        crate::resolve::Context {
            vm_name: vm.map(String::from),
            host: self.host.clone(),
            store_path: self.store_root.clone(),
            settings: self.settings.clone(),
        }
    }
}

type Shared = Arc<Ui>;

/// Runs the console until Ctrl-C (or SIGTERM): stops accepting, lets running provisioning
/// runs see the interrupt and clean up, then returns.
pub(crate) fn serve(cfg: Config) -> Result<()> {
    let loopback = cfg.listen.ip().is_loopback();
    if !loopback && cfg.tls.is_none() {
        anyhow::bail!(
            crate::diagnostic::Diagnostic::error(format!(
                "refusing to listen on `{}` without TLS: not a loopback address",
                cfg.listen
            ))
            .with_hint(
                "give --tls-cert and --tls-key, or listen on 127.0.0.1 and use `ssh -L 8470:127.0.0.1:8470 HOST`"
            )
        );
    }
    let acceptor = match &cfg.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    crate::interrupt::install();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(16)
        .build()
        .context("cannot start the web server's runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on `{}`", cfg.listen))?;
        let addr = listener.local_addr()?;
        let secrets = security::Secrets::new(addr, acceptor.is_some())?;
        let url = format!("{}://{addr}/?token={}", secrets.scheme, secrets.token);
        let ui = Arc::new(Ui {
            settings: cfg.settings,
            host: cfg.host,
            store_root: cfg.store_root,
            remote_log: cfg.remote_log,
            secrets,
            runs: runs::Runs::default(),
        });
        let app = router(ui.clone());
        {
            // A reader of stdout that went away after the URL does not stop the console.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "convirt console: {url}")
                .and_then(|()| out.flush())
                .and_then(|()| {
                    writeln!(
                        out,
                        "(open it in a browser on this machine; Ctrl-C stops the console)"
                    )
                })
                .and_then(|()| out.flush());
        }
        let stop = async {
            while !crate::interrupt::interrupted() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        match acceptor {
            Some(acceptor) => axum::serve(
                tls::TlsListener {
                    tcp: listener,
                    acceptor,
                },
                app,
            )
            .with_graceful_shutdown(stop)
            .await
            .context("the web server failed")?,
            None => axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
                .context("the web server failed")?,
        }
        // Running provisioning runs saw the same interrupt: wait until they cleaned up.
        let pending = ui.runs.unfinished();
        if pending > 0 {
            eprintln!("waiting for {pending} provisioning run(s) to stop and clean up");
        }
        while ui.runs.unfinished() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("convirt console stopped");
        Ok::<(), anyhow::Error>(())
    })
}

fn router(ui: Shared) -> Router {
    Router::new()
        .route("/", get(images::home))
        .route(
            "/static/style.css",
            get(|| async { asset("text/css", STYLE) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .route("/images/{name}", get(images::show))
        .route(
            "/images/{name}/edit",
            get(images::edit_form).post(images::edit),
        )
        .route(
            "/images/{name}/create-like",
            get(images::create_like_form).post(images::create_like),
        )
        .route("/images/{name}/pack", get(images::pack))
        .route(
            "/import",
            get(images::import_form)
                .post(images::import)
                .layer(axum::extract::DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route(
            "/images/{name}/provision",
            get(runs::form).post(runs::start),
        )
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::page))
        .route("/runs/{id}/events", get(runs::events))
        .route("/vms", get(vms::list))
        .route("/vms/{host}/{name}/start", post(vms::start))
        .route(
            "/vms/{host}/{name}/remove",
            get(vms::remove_form).post(vms::remove),
        )
        .fallback(|| async { html::error_page(axum::http::StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::from_fn_with_state(
            ui.clone(),
            security::guard,
        ))
        .with_state(ui)
}

/// The largest archive Import takes (it is held in memory, then written to a temporary file).
const UPLOAD_LIMIT: usize = 256 << 20;

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(axum::http::header::CONTENT_TYPE, kind)], body).into_response()
}

/// Runs library code (file I/O, evaluation, processes) off the async thread.
async fn blocking<F>(f: F) -> Response
where
    F: FnOnce() -> Response + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(_) => html::error_page(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the request failed inside the server",
        ),
    }
}

/// Every message of an error: each diagnostic rendered as the CLI prints it.
fn messages(e: &anyhow::Error) -> Vec<String> {
    if let Some(d) = e.downcast_ref::<crate::diagnostic::Diagnostics>() {
        return d.0.iter().map(|d| d.render()).collect();
    }
    if let Some(d) = e.downcast_ref::<crate::diagnostic::Diagnostic>() {
        return vec![d.render()];
    }
    vec![format!("{e:#}")]
}
