//! SPDY/3.1 as the Kubernetes streaming protocols use it: a multiplexer of byte streams
//! over one upgraded HTTP/1.1 connection.

mod conn;
#[cfg(test)]
pub mod peer;

pub use criox_formats::spdy::{frame, headers};

pub use conn::{Closed, Connection, SpdyStream, StreamWriter};
