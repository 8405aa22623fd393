//! The streaming twins of the List calls (StreamPodSandboxes, StreamContainers,
//! StreamImages, StreamContainerStats, StreamPodSandboxStats, StreamPodSandboxMetrics,
//! KEP-5825): the same items as the List answer, cut into responses small enough for any
//! client's receive limit, so a node whose lists outgrow one gRPC message still answers.

use std::pin::Pin;

use prost::Message;
use tokio_stream::Stream;
use tonic::Status;

/// The response stream of every Stream call.
pub type Chunks<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

/// At most this many items per response: small enough that a response is cheap to build
/// and decode, large enough that a node's list takes few responses.
pub const MAX_ITEMS: usize = 256;

/// At most this many encoded bytes of items per response, well below the 4 MiB default
/// receive limit of grpc-go and the kubelet's 16 MiB. An item larger than this on its own
/// goes alone in its response (each response holds at least one item).
pub const MAX_BYTES: usize = 1 << 20;

/// Splits `items` into consecutive runs within `MAX_ITEMS` and `MAX_BYTES`, in order:
/// every item in exactly one run, none empty.
pub fn split<T: Message>(items: Vec<T>, max_items: usize, max_bytes: usize) -> Vec<Vec<T>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    let mut bytes = 0;
    for item in items {
        // An item's share of the response: its length, tag and length prefix.
        let size = item.encoded_len() + 1 + prost::length_delimiter_len(item.encoded_len());
        if !run.is_empty() && (run.len() >= max_items || bytes + size > max_bytes) {
            runs.push(std::mem::take(&mut run));
            bytes = 0;
        }
        bytes += size;
        run.push(item);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// The stream of responses that `wrap` makes from `items`' runs. A caller that cancels
/// half-way drops the stream and with it the items not yet sent: nothing else was made
/// for it.
pub fn chunks<T, R>(items: Vec<T>, wrap: fn(Vec<T>) -> R) -> Chunks<R>
where
    T: Message + 'static,
    R: Send + 'static,
{
    let runs = split(items, MAX_ITEMS, MAX_BYTES);
    Box::pin(tokio_stream::iter(
        runs.into_iter().map(move |run| Ok(wrap(run))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(len: usize) -> criox_proto::v1::KeyValue {
        criox_proto::v1::KeyValue {
            key: "k".repeat(len),
            value: Vec::new(),
        }
    }

    #[test]
    fn every_item_once_in_order_within_both_bounds() {
        let items: Vec<_> = (0..1000).map(|i| item(i % 300 + 1)).collect();
        let runs = split(items.clone(), 64, 4096);
        assert!(runs.iter().all(|r| !r.is_empty() && r.len() <= 64));
        assert!(runs.iter().all(|r| {
            r.len() == 1
                || r.iter()
                    .map(|i| i.encoded_len() + 1 + prost::length_delimiter_len(i.encoded_len()))
                    .sum::<usize>()
                    <= 4096
        }));
        assert_eq!(runs.concat(), items);
    }

    #[test]
    fn an_item_over_the_byte_bound_goes_alone() {
        let runs = split(vec![item(10), item(5000), item(10)], 64, 4096);
        assert_eq!(runs.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn no_items_no_responses() {
        assert!(split(Vec::<criox_proto::v1::KeyValue>::new(), 64, 4096).is_empty());
    }
}
