//! Stream adapters for a connection: replaying the bytes read while peeking at the ClientHello,
//! and tracking the last activity for the idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one read from the socket may take ahead of what OpenSSL asked for.
const READ_AHEAD: usize = 4096;

/// A read-ahead buffer in front of a stream, which first yields `prefix` (the ClientHello,
/// read before OpenSSL got the connection).
///
/// OpenSSL reads a TLS record in two small reads (header, then body); straight on a socket
/// that is two `recv` calls per record. Here one `recv` of up to [`READ_AHEAD`] bytes serves
/// them. The buffer is freed whenever it is drained, so an idle connection holds none.
pub struct Buffered<S> {
    buffer: Vec<u8>,
    position: usize,
    /// `None` once [`Buffered::detach`]ed.
    inner: Option<S>,
}

impl<S> Buffered<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Buffered<S> {
        Buffered {
            buffer: prefix,
            position: 0,
            inner: Some(inner),
        }
    }

    /// Takes the stream out, with the bytes read ahead and not yet consumed; after it, the
    /// adapter reads and writes nothing (`NotConnected`). `None` if it was taken before.
    pub fn detach(&mut self) -> Option<(Vec<u8>, S)> {
        let inner = self.inner.take()?;
        let mut rest = std::mem::take(&mut self.buffer);
        rest.drain(..self.position);
        self.position = 0;
        Some((rest, inner))
    }

    /// The stream under the buffer, unless detached.
    pub fn get_mut(&mut self) -> Option<&mut S> {
        self.inner.as_mut()
    }

    fn inner(&mut self) -> io::Result<&mut S> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }

    /// Copies buffered bytes into `out`; frees the buffer once it is drained.
    fn drain_into(&mut self, out: &mut ReadBuf<'_>) {
        let rest = &self.buffer[self.position..];
        let n = rest.len().min(out.remaining());
        out.put_slice(&rest[..n]);
        self.position += n;
        if self.position == self.buffer.len() {
            self.buffer = Vec::new();
            self.position = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Buffered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.position < this.buffer.len() {
            this.drain_into(out);
            return Poll::Ready(Ok(()));
        }
        let inner = this.inner()?;
        // A large read goes straight to the caller's buffer.
        if out.remaining() >= READ_AHEAD {
            return Pin::new(inner).poll_read(cx, out);
        }
        let mut chunk = vec![0u8; READ_AHEAD];
        let mut chunk_buf = ReadBuf::new(&mut chunk);
        match Pin::new(inner).poll_read(cx, &mut chunk_buf) {
            Poll::Ready(Ok(())) => {
                let filled = chunk_buf.filled().len();
                chunk.truncate(filled);
                this.buffer = chunk;
                this.position = 0;
                if filled > 0 {
                    this.drain_into(out);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Buffered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.inner()?).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.inner()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.inner()?).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn buffered_yields_the_prefix_then_the_stream_in_order() {
        let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let writer = payload.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            client.write_all(&writer[100..]).await.unwrap();
        });
        let mut reader = Buffered::new(payload[..100].to_vec(), server);
        let mut out = Vec::new();
        // Small reads, as OpenSSL makes them, then a large one.
        let mut small = [0u8; 5];
        for _ in 0..50 {
            let n = reader.read(&mut small).await.unwrap();
            out.extend_from_slice(&small[..n]);
        }
        let mut rest = vec![0u8; payload.len()];
        while out.len() < payload.len() {
            let n = reader.read(&mut rest).await.unwrap();
            assert!(n > 0, "stream ended early at {}", out.len());
            out.extend_from_slice(&rest[..n]);
        }
        assert_eq!(out, payload);
        assert!(
            reader.buffer.capacity() <= READ_AHEAD,
            "no buffer kept beyond a chunk"
        );
    }
}

/// When a connection last moved a byte, in milliseconds since a fixed origin.
#[derive(Clone)]
pub struct Activity {
    origin: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last byte in either direction.
    pub fn idle_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// A stream that records activity on every successful read or write.
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Activity) -> Tracked<S> {
        activity.touch();
        Tracked { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Holds back partial segments on a TCP socket until it is shut down (`TCP_CORK`): a last
/// answer, TLS's close_notify and the FIN leave in one segment, not three, and the kernel
/// handles (on loopback: for both ends) one packet instead of three. Best effort: a socket
/// that refuses is written as before.
pub fn cork(socket: std::os::fd::RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&on`, which lives across the
    // call; a bad or closed descriptor only makes it fail.
    unsafe {
        libc::setsockopt(
            socket,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
