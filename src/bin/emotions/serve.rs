//! `emotions serve`: the HTTP server on a tokio runtime, stopped by SIGTERM or Ctrl-C.

use crate::args::ServeConfig;
use anyhow::Context;
use std::sync::Arc;

pub fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        let local = listener.local_addr()?;
        eprintln!(
            "emotions: serving on http://{local} (POST /classify, GET /labels /health /metrics)"
        );
        emotions_server::serve(
            listener,
            Arc::new(config.classifier),
            config.server,
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
