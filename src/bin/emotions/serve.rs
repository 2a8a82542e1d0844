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
        // The handlers are in place before the address is printed: a signal sent as soon as
        // the server answers must stop it gracefully, not kill it.
        let stop = shutdown_signal();
        eprintln!(
            "emotions: serving on http://{local} (POST /classify /predict /embed /embed_all /tokenize /decode /v1/embeddings /, GET /info /v1/models /labels /health /metrics /openapi.json)"
        );
        emotions_server::serve(listener, Arc::new(classifier), plan.server, stop)
        .await
        .context("serving")?;
        eprintln!("emotions: shut down");
        Ok(())
    })
}

/// Resolves on SIGTERM, SIGHUP (a closed terminal), SIGUSR1 or Ctrl-C: each the same graceful
/// stop, since a signal whose default action kills the process should not cut requests off.
/// The Unix handlers are installed when this is called, not when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let mut streams: Vec<_> = {
        use tokio::signal::unix::{SignalKind, signal};
        let kinds = [
            SignalKind::terminate(),
            SignalKind::hangup(),
            SignalKind::user_defined1(),
        ];
        kinds.into_iter().filter_map(|k| signal(k).ok()).collect()
    };
    #[cfg(unix)]
    let term = async move {
        if streams.is_empty() {
            std::future::pending::<()>().await;
        }
        let any = streams.iter_mut().map(|s| Box::pin(s.recv()));
        futures_select_all(any).await;
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    async move {
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
    }
}

/// The first of several futures to finish.
#[cfg(unix)]
async fn futures_select_all<F: std::future::Future + Unpin>(futures: impl Iterator<Item = F>) {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(|cx| {
        for f in &mut futures {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}
