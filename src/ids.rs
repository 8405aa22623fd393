//! Identity and time shared by pods and containers: the id generator, the clock the CRI
//! reports timestamps in, and the per-id operation locks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A new pod or container id: 32 random bytes as 64 hex digits, like other CRI runtimes.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    if getrandom(&mut bytes).is_err() {
        // The clock and pid still make a unique id on this host where the random source fails.
        let seed = now_ns() as u128 ^ (u128::from(std::process::id()) << 64);
        bytes[..16].copy_from_slice(&seed.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n as usize == buf.len() {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Wall-clock nanoseconds since the epoch, the unit of every CRI timestamp.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One async lock per id, held through each operation on that object so that run, stop
/// and remove of one id never interleave while different ids proceed in parallel.
#[derive(Default)]
pub struct Locks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    /// The lock of `id`, made on first use.
    pub fn of(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// Forgets the lock of an object that no longer exists; holders keep their clone.
    pub fn forget(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn the_clock_counts_nanoseconds() {
        // 2020-01-01 in ns; a clock in seconds or microseconds would be far below it.
        assert!(now_ns() > 1_577_836_800_000_000_000);
    }

    #[tokio::test]
    async fn one_id_shares_a_lock_and_other_ids_do_not_wait() {
        let locks = Locks::default();
        let held = locks.of("a");
        let _guard = held.lock().await;
        assert!(locks.of("a").try_lock().is_err());
        assert!(locks.of("b").try_lock().is_ok());
        locks.forget("a");
        assert!(locks.of("a").try_lock().is_ok());
    }
}
