//! Serving a pipelined request stream: a client sends many requests on one
//! bidirectional stream and each gets its answer as soon as it is ready.

use std::future::Future;
use std::pin::Pin;

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

/// The answer stream a service method returns.
pub type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Handles the requests of `incoming` with at most `max_in_flight` of them
/// unanswered, answering each as `handle`'s future completes (in any order).
///
/// One task per stream drives all of its requests: a batch of work that
/// completes many of them wakes this task once, where a task per request
/// meant a wake-up and a scheduling round each. Past `max_in_flight` the
/// stream is not read, so HTTP/2 flow control holds the client back. When
/// the client goes away, the requests in flight still complete.
pub fn serve<Req, Resp, F, Fut>(
    mut incoming: Streaming<Req>,
    max_in_flight: usize,
    mut handle: F,
) -> Answers<Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: FnMut(Req) -> Fut + Send + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let max = max_in_flight.max(1);
    let (tx, rx) = mpsc::channel::<Result<Resp, Status>>(max);
    tokio::spawn(async move {
        let mut in_flight = FuturesUnordered::new();
        let mut reading = true;
        loop {
            tokio::select! {
                next = incoming.next(), if reading && in_flight.len() < max => match next {
                    Some(Ok(req)) => in_flight.push(handle(req)),
                    Some(Err(s)) => {
                        tracing::debug!(status = %s, "request stream ended with an error");
                        reading = false;
                    }
                    None => reading = false,
                },
                Some(resp) = in_flight.next(), if !in_flight.is_empty() => {
                    if tx.send(Ok(resp)).await.is_err() {
                        break;
                    }
                }
                else => break,
            }
            if !reading && in_flight.is_empty() {
                break;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
