//! `emotions serve`: the HTTP server on a tokio runtime, stopped gracefully by SIGTERM, SIGHUP
//! or Ctrl-C.

use crate::args::ServePlan;
use crate::load;
use anyhow::Context;
use std::sync::Arc;

pub fn serve(plan: ServePlan) -> anyhow::Result<()> {
    let classifier = load::classifier(&plan.head, &plan.encoder)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(plan.addr)
            .await
            .with_context(|| format!("binding {}", plan.addr))?;
        let local = listener.local_addr()?;
        eprintln!(
            "emotions: serving on http://{local} (POST /classify /predict /embed /v1/embeddings /, GET /info /labels /health /metrics /openapi.json)"
        );
        emotions_server::serve(
            listener,
            Arc::new(classifier),
            plan.server,
            shutdown_signal(),
        )
        .await
        .context("serving")?;
        eprintln!("emotions: shut down");
        Ok(())
    })
}

/// Resolves on SIGTERM, SIGHUP (a closed terminal: the same graceful stop) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        let (term, hup) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        );
        match (term, hup) {
            (Ok(mut term), Ok(mut hup)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = hup.recv() => {},
                }
            }
            (Ok(mut term), Err(_)) => {
                term.recv().await;
            }
            _ => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
