//! A limit on the requests in flight on one connection that makes the
//! client wait instead of failing its calls.
//!
//! tarpc's own limit (`max_concurrent_requests`) answers every request over
//! it with a "throttled" error, so a client that merely has many calls in
//! flight sees some fail. [`Backpressure`] instead stops reading the
//! connection while the limit is reached: further requests wait in the
//! socket buffers, and a client that never reads its replies stalls itself
//! (its writes block) while the server holds a bounded amount of memory for
//! it. Reading resumes as replies are written out.
//!
//! No waker is lost: the channel is polled by tarpc's request loop, which
//! also writes the replies; a handler that finishes wakes that loop, which
//! writes the reply (freeing a place) and polls for the next request again.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Sink, Stream};
use tarpc::Response;
use tarpc::server::{Channel, Config};

/// A channel that reads no new request while `limit` are in flight.
#[derive(Debug)]
pub struct Backpressure<C> {
    inner: C,
    limit: usize,
}

impl<C> Backpressure<C> {
    pub fn new(inner: C, limit: usize) -> Self {
        Backpressure {
            inner,
            limit: limit.max(1),
        }
    }

    fn inner(self: Pin<&mut Self>) -> Pin<&mut C>
    where
        C: Unpin,
    {
        Pin::new(&mut self.get_mut().inner)
    }
}

impl<C: Channel + Unpin> Stream for Backpressure<C> {
    type Item = <C as Stream>::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.inner.in_flight_requests() >= self.limit {
            return Poll::Pending;
        }
        self.inner().poll_next(cx)
    }
}

impl<C: Channel + Unpin> Sink<Response<C::Resp>> for Backpressure<C> {
    type Error = <C as Sink<Response<C::Resp>>>::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner().poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Response<C::Resp>) -> Result<(), Self::Error> {
        self.inner().start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner().poll_close(cx)
    }
}

impl<C: Channel + Unpin> Channel for Backpressure<C> {
    type Req = C::Req;
    type Resp = C::Resp;
    type Transport = C::Transport;

    fn config(&self) -> &Config {
        self.inner.config()
    }

    fn in_flight_requests(&self) -> usize {
        self.inner.in_flight_requests()
    }

    fn transport(&self) -> &Self::Transport {
        self.inner.transport()
    }
}
