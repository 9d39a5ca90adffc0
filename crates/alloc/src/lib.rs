//! The C allocator's freed memory handed back to the kernel.
//!
//! glibc's malloc keeps the pages of freed memory in its heap: after start-up (argument parsing,
//! settings, the first TLS handshakes, the inventory) an idle sensor holds ~0.8 MiB of heap of
//! which ~0.27 MiB is free but resident (measured on the packaged binary, README "Benchmarks").
//! `malloc_trim(0)` returns every whole free page of every arena (madvise), not only the top of
//! the heap, which is all the `glibc.malloc.trim_threshold` tunable does (measured: no change).
//!
//! What it does not do: it never frees anything still in use, and elsewhere than glibc (musl,
//! other systems) it does nothing.

/// Returns the allocator's free pages to the kernel; true when some memory was released.
/// Cheap at idle (a walk of the free lists of a small heap); call it when a burst of work is over.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: malloc_trim takes the allocator's own locks and only releases free pages; it
        // has no precondition on the caller (glibc's documented prototype: int malloc_trim(size_t)).
        unsafe { malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_freed_in_the_middle_of_the_heap_is_released() {
        // Blocks below the mmap threshold come from the heap; freeing every other one leaves
        // free pages in the middle, which only malloc_trim hands back.
        let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 32 * 1024]).collect();
        let kept: Vec<Vec<u8>> = blocks
            .into_iter()
            .enumerate()
            .filter_map(|(i, b)| (i % 2 == 0).then_some(b))
            .collect();
        let released = release_free_memory();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(released, "nothing released");
        }
        // What is kept is intact.
        for (i, b) in kept.iter().enumerate() {
            assert!(b.iter().all(|&x| x == (2 * i) as u8));
        }
    }
}
