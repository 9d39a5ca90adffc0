//! A long-running sensor gives memory back once it goes idle (#27, #28: ≤ 8 MiB resident idle).
//!
//! Two things stay resident after the sensor starts or after a burst of events, although the idle
//! sensor never touches them again:
//! - freed heap that glibc's malloc keeps for reuse (the start's TLS handshake and enrollment, a
//!   tail's batches): `malloc_trim(0)` returns the free pages of every arena to the kernel;
//! - code and read-only data the start ran (argument parsing, configuration, TLS setup): every
//!   page of the binary touched once stays mapped, with its 64 KiB fault-around window. The
//!   read-only segments of the binary and of its shared libraries are never written (no COW
//!   copies), so `madvise(MADV_DONTNEED)` only unmaps the process's view of the page cache; the
//!   next access maps the page again from the page cache (a minor fault, no I/O unless the kernel
//!   evicted it meanwhile). Writable segments (data, .bss, RELRO, whose pages hold relocated
//!   pointers that the file does not) are never touched. Nor is any segment of an object with text
//!   relocations (its "read-only" code was patched in private copies), a read-only dynamic
//!   section, or a page the loader zero-filled past the file's bytes.
//!
//! When: the process's CPU time is sampled every period; a period in which it used less than
//! [`IDLE_CPU_PERMILLE`] of the period is idle. An idle period trims when the resident set grew by
//! more than [`GROWTH_KIB`] since the last trim (or at the first idle period): after the start,
//! after a burst of events, and after a heartbeat that mapped its connection's code again. A
//! sensor that stays idle does not trim again (nothing to give back), one that keeps tailing
//! never (not idle).

use std::time::Duration;

/// The share of a period (per mille of its wall time) a process may spend on CPU and still count
/// as idle: an idle sensor spends ~1 ms a minute (a heartbeat); one tailing a few events a second
/// stays under it too.
pub const IDLE_CPU_PERMILLE: u32 = 10;

/// Growth of the resident set (KiB) since the last trim that an idle period gives back: a
/// heartbeat maps its connection's code again (~1-3 MiB); an idle sensor's own polling, nothing.
pub const GROWTH_KIB: u64 = 256;

/// Decides when to trim from successive samples of the process's CPU time and resident set.
/// Pure, table-tested.
#[derive(Debug)]
pub struct IdleTrim {
    budget: Duration,
    last_cpu: Duration,
    /// The resident set after the last trim; None before the first.
    trimmed_to_kib: Option<u64>,
}

impl IdleTrim {
    /// `period`: the time between samples; `cpu_now`: the process's CPU time at the start.
    pub fn new(period: Duration, cpu_now: Duration) -> Self {
        IdleTrim {
            budget: period * IDLE_CPU_PERMILLE / 1000,
            last_cpu: cpu_now,
            trimmed_to_kib: None,
        }
    }

    /// One sample, a period after the previous one, with the resident set now: true when memory
    /// should be given back now (then call [`IdleTrim::trimmed`] with the resident set after).
    pub fn tick(&mut self, cpu_now: Duration, rss_kib: u64) -> bool {
        let used = cpu_now.saturating_sub(self.last_cpu);
        self.last_cpu = cpu_now;
        used <= self.budget
            && self
                .trimmed_to_kib
                .is_none_or(|after| rss_kib > after.saturating_add(GROWTH_KIB))
    }

    /// Records the resident set a trim left.
    pub fn trimmed(&mut self, rss_after_kib: u64) {
        self.trimmed_to_kib = Some(rss_after_kib);
    }
}

/// What one trim did, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// Bytes of read-only mappings (the binary's and its libraries') unmapped from this process.
    pub read_only_bytes: u64,
}

/// Gives back free heap and unmaps the read-only segments of every loaded object (module doc).
pub fn trim() -> Trimmed {
    let rss_before_kib = rss_kib();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's arenas; it takes their locks.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    let read_only_bytes = unmap_read_only_segments();
    #[cfg(not(target_os = "linux"))]
    let read_only_bytes = 0;
    Trimmed {
        rss_before_kib,
        rss_after_kib: rss_kib(),
        read_only_bytes,
    }
}

/// The other way round while busy (issue #28): keep freed heap for the next request (the
/// service) or the next chunk and batch (`sensor run`, whose idle trim gives it back).
/// glibc hands each batch's buffers (~1.5 MB decoded, its events' strings) to `mmap` or to a
/// thread arena that trims its top back to the kernel once the request frees them, so every
/// request faulted in fresh zeroed pages again (perf: page faults, `clear_page`, `madvise`).
/// Allocations below `mmap_threshold` come from the arenas, which keep up to `trim_threshold`
/// bytes free at their top. Setting either fixes it (glibc then stops adjusting them).
/// Returns whether glibc took both (elsewhere, no-op and false).
pub fn keep_freed_heap(mmap_threshold: usize, trim_threshold: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let (Ok(mmap), Ok(trim)) = (
            libc::c_int::try_from(mmap_threshold),
            libc::c_int::try_from(trim_threshold),
        ) else {
            return false;
        };
        // SAFETY: mallopt only sets glibc's malloc parameters (under its lock).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (mmap_threshold, trim_threshold);
        false
    }
}

/// The process's CPU time (user + system), or zero where it cannot be read (then every period
/// looks idle: the trim happens once, which is harmless).
pub fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which outlives the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// VmRSS of this process in KiB (0 where /proc is missing).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The page-aligned ranges inside a segment `[start, start + len)`: only whole pages that the
/// segment alone covers (a page shared with a neighbouring, possibly writable, segment is kept).
fn inner_pages(start: usize, len: usize, page: usize) -> Option<(usize, usize)> {
    let first = start.checked_add(page - 1)? / page * page;
    let end = start.checked_add(len)? / page * page;
    (end > first).then(|| (first, end - first))
}

/// What the loader's callback needs and gives back.
#[cfg(target_os = "linux")]
struct Walk {
    page: usize,
    total: u64,
}

/// `DT_NULL`, `DT_TEXTREL`, `DT_FLAGS` and its `DF_TEXTREL` bit (elf.h): an object whose code
/// the loader relocated in place, in private copies of "read-only" pages.
const DT_NULL: isize = 0;
const DT_TEXTREL: isize = 22;
const DT_FLAGS: isize = 30;
const DF_TEXTREL: usize = 0x4;

/// Whether the dynamic entries `dynamic` (tag, value pairs up to `DT_NULL`) say the object has
/// text relocations. Pure, table-tested.
fn has_text_relocations(dynamic: impl IntoIterator<Item = (isize, usize)>) -> bool {
    for (tag, value) in dynamic {
        match tag {
            DT_NULL => break,
            DT_TEXTREL => return true,
            DT_FLAGS if value & DF_TEXTREL != 0 => return true,
            _ => {}
        }
    }
    false
}

#[cfg(target_os = "linux")]
fn unmap_read_only_segments() -> u64 {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid dl_phdr_info for the duration of the callback, and
        // `data` is the &mut Walk handed to dl_iterate_phdr below.
        let (info, walk) = unsafe { (&*info, &mut *(data as *mut Walk)) };
        // The main program has an empty name; a library its path. The vDSO (named
        // "linux-vdso.so.1", not a file) is kernel memory: never advise it.
        let name = if info.dlpi_name.is_null() {
            &[][..]
        } else {
            // SAFETY: a NUL-terminated string owned by the loader.
            unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes()
        };
        if !(name.is_empty() || name.starts_with(b"/")) || info.dlpi_phdr.is_null() {
            return 0;
        }
        let base = info.dlpi_addr as usize;
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        // An object with text relocations has private, relocated copies of pages its headers
        // call read-only: dropping them would bring back the file's unrelocated bytes (found in
        // review). Such an object (an LD_PRELOADed library built without -fPIC) is left alone.
        // So is one whose dynamic section lies in a read-only segment (-z rodynamic: the loader
        // writes DT_DEBUG there).
        let dynamic = phdrs.iter().find(|ph| ph.p_type == libc::PT_DYNAMIC);
        if let Some(dy) = dynamic {
            let entries = (base + dy.p_vaddr as usize) as *const (isize, usize);
            let count = dy.p_memsz as usize / std::mem::size_of::<(isize, usize)>();
            // SAFETY: PT_DYNAMIC of a loaded object is mapped and holds `count` ElfW(Dyn)
            // entries, each a signed tag and an unsigned word (the tuple's layout on Linux's
            // 32- and 64-bit ABIs), ending at DT_NULL.
            let dyns = (0..count).map(|i| unsafe { entries.add(i).read_unaligned() });
            if has_text_relocations(dyns) {
                return 0;
            }
        }
        for ph in phdrs {
            if ph.p_type != libc::PT_LOAD || ph.p_flags & libc::PF_W != 0 || ph.p_filesz == 0 {
                continue;
            }
            let start = base + ph.p_vaddr as usize;
            if let Some(dy) = dynamic {
                let at = base + dy.p_vaddr as usize;
                if at >= start && at < start + ph.p_memsz as usize {
                    continue;
                }
            }
            // Only the file-backed bytes: a page the loader zero-filled past p_filesz is kept.
            let Some((first, len)) = inner_pages(start, ph.p_filesz as usize, walk.page) else {
                continue;
            };
            // SAFETY: the range lies inside a mapped read-only PT_LOAD segment of a loaded
            // object without text relocations, which nothing writes (no private copy to lose):
            // MADV_DONTNEED only drops this process's page-table entries, and the next access
            // maps the same file page again. Done inside the callback, under the loader's lock,
            // so the object cannot be unloaded (and something else mapped there) meanwhile.
            if unsafe { libc::madvise(first as *mut libc::c_void, len, libc::MADV_DONTNEED) } == 0 {
                walk.total += len as u64;
            }
        }
        0
    }
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096);
    let mut walk = Walk { page, total: 0 };
    // SAFETY: the callback only reads the headers the loader passes and advises their pages.
    unsafe {
        libc::dl_iterate_phdr(Some(each), &mut walk as *mut Walk as *mut libc::c_void);
    }
    walk.total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_service_heap_settings_and_refuses_out_of_range_ones() {
        // (mmap threshold, trim threshold, taken): values past a C int are refused here.
        for (mmap, trim, taken) in [
            (32 << 20, 64 << 20, true),
            (1 << 20, 2 << 20, true),
            (1 << 40, 64 << 20, false),
            (32 << 20, usize::MAX, false),
        ] {
            assert_eq!(keep_freed_heap(mmap, trim), taken, "{mmap} {trim}");
        }
    }

    #[test]
    fn text_relocations_are_found_in_the_dynamic_entries() {
        let cases: &[(&[(isize, usize)], bool)] = &[
            (&[], false),
            (&[(1, 5), (30, 0x8), (0, 0)], false),
            (&[(1, 5), (22, 0), (0, 0)], true),
            (&[(30, 0x4 | 0x8), (0, 0)], true),
            // After DT_NULL nothing counts.
            (&[(0, 0), (22, 0)], false),
        ];
        for (dynamic, want) in cases {
            assert_eq!(
                has_text_relocations(dynamic.iter().copied()),
                *want,
                "{dynamic:?}"
            );
        }
    }

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    /// (CPU time, resident KiB at each sample, whether that sample trims; a trim leaves
    /// 1000 KiB), period 1 s: budget 10 ms, growth 256 KiB.
    #[test]
    fn trims_when_idle_and_grown() {
        type Samples = Vec<(Duration, u64, bool)>;
        let cases: Vec<(&str, Samples)> = vec![
            (
                "idle from the start: once",
                vec![
                    (MS, 5000, true),
                    (2 * MS, 1000, false),
                    (3 * MS, 1100, false),
                ],
            ),
            (
                "busy start, then idle",
                vec![
                    (S, 9000, false),
                    (S + MS, 9000, true),
                    (S + 2 * MS, 1000, false),
                ],
            ),
            (
                "a heartbeat grew it: trims again while idle",
                vec![
                    (MS, 5000, true),
                    (2 * MS, 3000, true),
                    (3 * MS, 1200, false),
                    (4 * MS, 1257, true),
                ],
            ),
            (
                "busy after a trim: not while busy, then once it settles",
                vec![
                    (MS, 5000, true),
                    (S, 8000, false),
                    (2 * S, 9000, false),
                    (2 * S, 9000, true),
                ],
            ),
            (
                "never idle: never",
                vec![(S, 5000, false), (2 * S, 6000, false), (3 * S, 7000, false)],
            ),
            ("exactly the budget is idle", vec![(10 * MS, 5000, true)]),
            (
                "exactly the growth is not enough",
                vec![(MS, 5000, true), (2 * MS, 1256, false)],
            ),
            (
                "a clock going back counts as idle",
                vec![(S, 5000, false), (MS, 5000, true)],
            ),
        ];
        for (name, samples) in cases {
            let mut t = IdleTrim::new(S, Duration::ZERO);
            for (i, (cpu, rss, want)) in samples.into_iter().enumerate() {
                let got = t.tick(cpu, rss);
                assert_eq!(got, want, "{name}: sample {i}");
                if got {
                    t.trimmed(1000);
                }
            }
        }
    }

    #[test]
    fn inner_pages_keep_shared_edges() {
        let p = 4096;
        let cases = [
            // (start, len) -> whole pages only the segment covers
            ((0, 3 * p), Some((0, 3 * p))),
            ((100, 3 * p), Some((p, 2 * p))),
            ((100, p), None),
            ((p, p - 1), None),
            ((p + 1, 2 * p), Some((2 * p, p))),
            ((usize::MAX - 10, 100), None),
        ];
        for ((start, len), want) in cases {
            assert_eq!(inner_pages(start, len, p), want, "{start} {len}");
        }
    }

    /// The real thing in this process: it returns, the RSS figures are read, and code and
    /// read-only data still work afterwards (this test keeps running and formatting).
    #[test]
    fn trim_leaves_a_working_process() {
        let t = trim();
        assert!(t.rss_before_kib > 0, "{t:?}");
        #[cfg(target_os = "linux")]
        assert!(t.read_only_bytes > 0, "{t:?}");
        let again = format!("{:?}", trim());
        assert!(again.contains("rss_after_kib"));
    }
}
