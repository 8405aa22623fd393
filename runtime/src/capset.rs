//! The capability sets of the calling thread, through the raw `capset` system call: it
//! allocates nothing, so it is safe between fork and exec and under a seccomp filter.

/// Empties the calling thread's permitted, effective and inheritable sets (the bounding
/// and ambient sets are left as they are).
pub fn clear_capability_sets() -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    // Version 3 takes two words: capabilities 0–31 and 32–63.
    let data = [Data::default(); 2];
    // SAFETY: capset reads a version 3 header and two data words we own.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
