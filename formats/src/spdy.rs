//! SPDY/3 framing as the Kubernetes streaming protocols use it: frames and the
//! compressed name/value header blocks. The connection that drives them is the daemon's.

pub mod frame;
pub mod headers;
