//! `emotions serve`: the HTTP server on a tokio runtime, stopped by SIGTERM or Ctrl-C.

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
            "emotions: serving on http://{local} (POST /classify, GET /labels /health /metrics)"
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

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
