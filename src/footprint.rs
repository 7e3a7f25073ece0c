//! Keeping lookout's resident memory to what it uses while running.
//!
//! Start-up (argument and config parsing, SSH set-up, the first draw) touches code that the
//! running loop never needs again, and those pages of the program file stay mapped: at idle
//! they were 6 of the dashboard's 10.7 MB of RSS, most of it code run once. After start-up,
//! [`release_startup_text`] unmaps the resident pages of the program's own code (its
//! read-only, executable mappings); the pages the loop runs fault back in from the page cache
//! on first use, at the cost of a minor fault each, and the rest stay out of lookout's RSS.

use std::time::Duration;

/// How long after start the program's code pages are released: long enough for the first
/// samples, draws and connections to have run once.
pub const RELEASE_AFTER: Duration = Duration::from_secs(15);

/// An executable, read-only private mapping of the program file in `/proc/self/maps`.
/// Writable and non-executable mappings are never touched: a private page that was written
/// (relocations, data) exists only in memory and would be lost.
fn program_text(maps: &str, inode: u64) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let _offset = f.next()?;
            let _dev = f.next()?;
            let ino: u64 = f.next()?.parse().ok()?;
            if perms != "r-xp" || ino != inode || inode == 0 {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let a = usize::from_str_radix(a, 16).ok()?;
            let b = usize::from_str_radix(b, 16).ok()?;
            (b > a).then_some((a, b - a))
        })
        .collect()
}

/// Releases the resident pages of the program's code (see the module comment). Returns
/// how many bytes of mappings were released; any failure leaves memory as it was.
pub fn release_startup_text() -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata("/proc/self/exe") else {
        return 0;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut released = 0;
    for (addr, len) in program_text(&maps, meta.ino()) {
        let advise = |advice: libc::c_int| {
            // SAFETY: the range is a whole read-only, executable private mapping of the
            // program file, whose pages were never written: these advices only change how
            // its pages are read in and drop them from this process's page tables (and, for
            // MADV_PAGEOUT, from the page cache when no other process maps them); the next
            // access reads the same bytes from the file. No Rust object lives in it.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
            rc == 0
        };
        // Random access: a fault reads only its own page, not a window around it, so the
        // pages mapped again are the ones the running loop touches.
        advise(libc::MADV_RANDOM);
        // Out of the page cache too where nothing else maps them (Linux 5.4+): otherwise
        // a fault maps the cached pages around it as well ("fault-around", 64 KiB).
        advise(libc::MADV_PAGEOUT);
        if advise(libc::MADV_DONTNEED) {
            released += len;
        }
    }
    released
}

#[cfg(test)]
mod tests {
    use super::{program_text, release_startup_text};

    #[test]
    fn only_executable_read_only_mappings_of_the_program_are_picked() {
        let maps = "\
5590e5896000-5590e5a00000 r--p 00000000 fd:01 4242 /usr/bin/lookout
5590e5a00000-5590e6300000 r-xp 0016a000 fd:01 4242 /usr/bin/lookout
5590e6300000-5590e6400000 r--p 00a6a000 fd:01 4242 /usr/bin/lookout
5590e6400000-5590e6410000 rw-p 00b6a000 fd:01 4242 /usr/bin/lookout
7f0000000000-7f0000100000 r-xp 00000000 fd:01 777 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 rwxp 00000000 00:00 0
garbage line
";
        assert_eq!(program_text(maps, 4242), [(0x5590e5a00000, 0x900000)]);
        assert!(program_text(maps, 0).is_empty());
        assert!(program_text(maps, 1).is_empty());
    }

    /// On this very test binary: the code is released and keeps running (the pages fault
    /// back in), and released code still computes the same.
    #[test]
    fn released_code_keeps_running() {
        let before: u64 = (1..=1000u64).map(|i| i * i % 7).sum();
        let released = release_startup_text();
        assert!(released > 0, "the test binary has a code mapping");
        let after: u64 = (1..=1000u64).map(|i| i * i % 7).sum();
        assert_eq!(before, after);
    }
}
