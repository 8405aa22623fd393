//! Gives back to the kernel the memory that creating a container touched and supervising
//! it does not need: every running container has a monitor, so what one keeps is paid
//! once per container.

/// Below the current frame, this much stack is kept: the calls made from here on (libc's
/// wrappers, the supervising loop) run in it without faulting pages back in.
const STACK_KEPT_BELOW: usize = 16 * 1024;

/// Releases free heap memory and the stack pages below the caller's frame. Creating the
/// container runs deeper than supervising it, and the pages it touched would stay resident
/// for the monitor's whole life (about 60 KiB, measured); nothing below the current frame
/// is live, so a page discarded there reads as zeroes if it is ever touched again.
pub(super) fn release() {
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    // Only on the main thread's own stack: another thread's lies elsewhere.
    if let Some((bottom, top)) = stack_mapping()
        && (bottom..top).contains(&here)
    {
        discard_below(bottom, here, page_size());
    }
}

/// Drops the pages of `[bottom, here)` but the last STACK_KEPT_BELOW bytes.
fn discard_below(bottom: usize, here: usize, page: usize) {
    let end = here.saturating_sub(STACK_KEPT_BELOW) & !(page - 1);
    if end > bottom {
        // SAFETY: [bottom, end) lies in the caller's stack mapping, below every live frame
        // and the margin for the calls still to come; MADV_DONTNEED only drops its pages.
        unsafe {
            libc::madvise(
                bottom as *mut libc::c_void,
                end - bottom,
                libc::MADV_DONTNEED,
            )
        };
    }
}

/// The main thread's stack mapping, `[start, end)`, from `/proc/self/maps`.
fn stack_mapping() -> Option<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    parse_stack_mapping(&maps)
}

fn parse_stack_mapping(maps: &str) -> Option<(usize, usize)> {
    let line = maps.lines().find(|l| l.ends_with("[stack]"))?;
    let range = line.split_whitespace().next()?;
    let (start, end) = range.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_stack_mapping() {
        let maps = "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/true\n\
                    7ffc8a1f3000-7ffc8a214000 rw-p 00000000 00:00 0                          [stack]\n\
                    7ffc8a2e1000-7ffc8a2e5000 r--p 00000000 00:00 0                          [vvar]\n";
        assert_eq!(
            parse_stack_mapping(maps),
            Some((0x7ffc8a1f3000, 0x7ffc8a214000))
        );
        assert_eq!(
            parse_stack_mapping("00400000-00452000 r-xp 0 08:02 1 /bin/x\n"),
            None
        );
    }

    /// Which of the `pages` pages from `base` are resident.
    fn resident(base: usize, pages: usize, page: usize) -> Vec<bool> {
        let mut vec = vec![0u8; pages];
        // SAFETY: [base, base + pages * page) is one mapping made by the test.
        let rc =
            unsafe { libc::mincore(base as *mut libc::c_void, pages * page, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().map(|v| v & 1 == 1).collect()
    }

    #[test]
    fn drops_the_pages_below_the_margin_and_keeps_the_rest() {
        let page = page_size();
        let pages = 64;
        // SAFETY: a fresh private anonymous mapping, unmapped at the end of the test.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                pages * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let base = base as usize;
        // SAFETY: writes within the mapping.
        unsafe { std::ptr::write_bytes(base as *mut u8, 7, pages * page) };
        let here = base + 48 * page + 100;
        discard_below(base, here, page);
        let kept_from = (here - STACK_KEPT_BELOW) / page * page;
        let first_kept = (kept_from - base) / page;
        let state = resident(base, pages, page);
        assert!(state[..first_kept].iter().all(|r| !r), "{state:?}");
        assert!(state[first_kept..].iter().all(|r| *r), "{state:?}");
        // A dropped page reads as zeroes; a kept one keeps its bytes.
        // SAFETY: reads within the mapping.
        unsafe {
            assert_eq!(*(base as *const u8), 0);
            assert_eq!(*((base + first_kept * page) as *const u8), 7);
            libc::munmap(base as *mut libc::c_void, pages * page);
        }
    }
}
