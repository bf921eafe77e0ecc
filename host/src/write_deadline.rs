//! A socket wrapper that fails a write the client does not drain in time.
//!
//! hyper has a timeout for reading headers but none for writing: a client
//! that pipelines requests and never reads its answers keeps a connection
//! (and the kernel's send buffer) forever. This wrapper arms a timer the
//! first time a write or flush cannot proceed (the send buffer is full) and
//! disarms it only when a flush completes, which hyper asks for after each
//! answer it has handed over. So an answer must leave our buffers within
//! the limit however the client trickles its reads, and when it does not,
//! the write fails with `TimedOut` and hyper closes the connection. Reads
//! pass through untouched (hyper's own timeouts cover them).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `S` with a bound on how long a write may stay blocked.
pub struct WriteDeadline<S> {
    inner: S,
    limit: Option<Duration>,
    /// Armed while a write is blocked; cleared by a completed flush.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    /// `limit` of `None` (or zero) never times out.
    pub fn new(inner: S, limit: Option<Duration>) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            limit: limit.filter(|d| !d.is_zero()),
            timer: None,
        }
    }

    /// The write is blocked: arm the timer if needed and fail once it fires.
    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(limit) = self.limit else {
            return Poll::Pending;
        };
        let t = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match t.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read its answer within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.blocked(cx),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.blocked(cx),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.blocked(cx),
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.blocked(cx),
            ready => ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that never reads: the writer fails after the limit, not before.
    #[test]
    fn an_undrained_write_times_out() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, _b) = tokio::io::duplex(1024);
            let limit = Duration::from_millis(200);
            let mut w = WriteDeadline::new(a, Some(limit));
            let t0 = std::time::Instant::now();
            let chunk = [0u8; 512];
            let err = loop {
                if let Err(e) = w.write_all(&chunk).await {
                    break e;
                }
            };
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert!(t0.elapsed() >= limit);
        });
    }

    #[test]
    fn a_drained_write_does_not() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, mut b) = tokio::io::duplex(64);
            let reader = tokio::spawn(async move {
                let mut sink = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut b, &mut sink)
                    .await
                    .map(|_| sink.len())
            });
            let mut w = WriteDeadline::new(a, Some(Duration::from_millis(200)));
            for _ in 0..100 {
                w.write_all(&[1u8; 100]).await.unwrap();
                w.flush().await.unwrap();
            }
            w.shutdown().await.unwrap();
            drop(w);
            assert_eq!(reader.await.unwrap().unwrap(), 10_000);
        });
    }
}
