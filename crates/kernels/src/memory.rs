//! Keeping a long run's memory flat.
//!
//! glibc's malloc raises its mmap threshold each time a large block is freed (up to 32 MB), so
//! after the first batch the encoder's activations, a few MB each, come from its heap arenas,
//! one or more per thread, and freed space inside an arena stays resident: a streaming
//! `classify` over 50,000 texts peaked at 1.5x the RSS of 10,000. Two arenas, trimmed once per
//! chunk of thousands of rows, keep it flat at no measurable cost. Fixing the mmap threshold
//! instead (every large block its own mapping) also kept RSS flat, but made embedding 1,000
//! texts 44% slower, in page faults.

/// Caps the allocator's arenas at two (glibc only; a no-op with other allocators). Call once,
/// first thing, in a program that runs many batches on several threads.
pub fn limit_heap_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// glibc's own ceiling for its mmap threshold, which it reaches after the first large blocks
/// are freed; [`grow_heap_in_huge_pages`] starts there.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_BLOCKS_UP_TO: usize = 32 << 20;

/// How far the main heap has been advised: where it stood when [`grow_heap_in_huge_pages`] was
/// called, then past each growth advised since; 0 until it is called.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
static HEAP_ADVISED_TO: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Serves blocks up to 32 MiB from the heap, grows it 32 MiB at a time (trimming it past 64),
/// and has [`HugePageAlloc`] advise its new pages for transparent huge pages: for the main
/// heap, what `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` with those thresholds does, set from
/// inside the program (glibc only; a no-op elsewhere).
///
/// Loading the encoder copies its tensors twice (the decoded file, then tract's) before packing
/// them: blocks of 150-600 KB, each its own mapping at glibc's starting threshold (128 KiB) and
/// faulted in 4 KiB at a time. Served from an advised heap instead, a cold `classify --text`
/// took 3,000-4,900 page faults instead of 12,100-13,000, and 0.109 s instead of 0.126 (medians
/// of 40 alternated runs; AVX2 Zen 3, in a VM, where each fault is dear); `embed` of 1,000
/// texts took as long as before (3.52 against 3.51 s at one thread, medians of 10).
/// Call once, first thing, in a program whose global allocator is [`HugePageAlloc`].
pub fn grow_heap_in_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; sbrk(0) only reads the break.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BLOCKS_UP_TO as libc::c_int);
        libc::mallopt(libc::M_TOP_PAD, HEAP_BLOCKS_UP_TO as libc::c_int);
        // A fixed threshold stops glibc's own adjustment, which would also have raised the
        // trim threshold to twice it: without this, the heap's top is handed back and faulted
        // in again batch after batch.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * HEAP_BLOCKS_UP_TO as libc::c_int);
        HEAP_ADVISED_TO.store(libc::sbrk(0) as usize, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Advises the huge pages the main heap has grown by since it was last advised, once
/// [`grow_heap_in_huge_pages`] was called. The advice changes only how pages are backed, so
/// two threads advising the same range, or a range other blocks share, change no contents.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn advise_heap_growth() {
    use std::sync::atomic::Ordering;
    let done = HEAP_ADVISED_TO.load(Ordering::Relaxed);
    if done == 0 {
        return;
    }
    // SAFETY: sbrk(0) only reads the break.
    let top = unsafe { libc::sbrk(0) } as usize;
    if top <= done {
        return;
    }
    let start = done.next_multiple_of(HUGE_PAGE);
    let end = top / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: [start, end) lies inside the heap, below its break: mapped, and only its
        // backing changes.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
        HEAP_ADVISED_TO.fetch_max(end, Ordering::Relaxed);
    }
}

#[cfg(all(target_os = "linux", not(target_env = "gnu")))]
fn advise_heap_growth() {}

/// Returns the allocator's free pages to the system (glibc's `malloc_trim`; a no-op with
/// other allocators). For programs that run many batches, between them.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The system allocator, with large blocks backed by transparent huge pages where the kernel
/// offers them on request (`madvise` mode, the common default).
///
/// Loading the encoder writes ~70 MB into fresh blocks (the decoded file, its tensors, packed
/// weights); in 4 KiB pages that is ~17,000 page faults, 12% of a cold `classify --text`'s
/// samples in perf. Blocks of at least two huge pages are advised. glibc's
/// `glibc.malloc.hugetlb=1` tunable does the same for every block, but only when set in the
/// environment before the process starts. Set it in a binary:
/// `#[global_allocator] static A: emotions_kernels::HugePageAlloc = HugePageAlloc;`
pub struct HugePageAlloc;

/// x86-64's and AArch64's (4 KiB base pages) transparent huge page.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

#[cfg(target_os = "linux")]
fn advise_huge(ptr: *mut u8, size: usize) {
    // A block this large may have grown the heap (smaller ones rarely do, and are not worth
    // the check).
    if size >= 64 << 10 {
        advise_heap_growth();
    }
    if ptr.is_null() || size < 2 * HUGE_PAGE {
        return;
    }
    // The huge pages wholly inside the block: the advice then touches no other block's pages.
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + size) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: the range lies inside a block this allocator just handed out; the advice
        // changes only how its pages are backed, never their contents. A kernel without
        // transparent huge pages refuses it, which changes nothing.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_ptr: *mut u8, _size: usize) {}

// SAFETY: every call is the system allocator's own; the advice only changes page backing.
unsafe impl std::alloc::GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as the caller promises.
        let ptr = unsafe { std::alloc::System.alloc(layout) };
        advise_huge(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as the caller promises. A zeroed large block is fresh mmapped memory, whose
        // pages are not touched until written, so advising after is in time.
        let ptr = unsafe { std::alloc::System.alloc_zeroed(layout) };
        advise_huge(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as the caller promises.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the caller promises.
        let ptr = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        advise_huge(ptr, new_size);
        ptr
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    /// The `VmFlags` of the mapping that holds `addr`, from /proc/self/smaps.
    fn vm_flags(addr: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.trim().to_string());
            }
        }
        None
    }

    /// Whether a huge-page advice shows in /proc/self/smaps here: a mapping advised directly
    /// is checked first. It does not show without transparent huge pages, nor under qemu-user,
    /// whose smaps is the emulator's and which drops the advice.
    fn advice_shows() -> bool {
        let len = 2 * HUGE_PAGE;
        // SAFETY: a fresh private anonymous mapping, advised and unmapped here, never read.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if map == libc::MAP_FAILED {
                return false;
            }
            let advised = libc::madvise(map, len, libc::MADV_HUGEPAGE) == 0;
            let shows =
                advised && vm_flags(map as usize).is_some_and(|f| f.split(' ').any(|f| f == "hg"));
            libc::munmap(map, len);
            shows
        }
    }

    /// After [`grow_heap_in_huge_pages`], blocks keep their contents, and whatever the main
    /// heap grew by is advised. (Test threads allocate from other arenas, so the main heap may
    /// not grow here; the CLI's main thread loads its models from it.)
    #[cfg(target_env = "gnu")]
    #[test]
    fn a_heap_grown_in_huge_pages_keeps_contents_and_advises_its_growth() {
        use std::sync::atomic::Ordering;
        grow_heap_in_huge_pages();
        let start = HEAP_ADVISED_TO.load(Ordering::Relaxed);
        assert_ne!(start, 0);
        let layout = Layout::from_size_align(600 << 10, 64).unwrap();
        // SAFETY: non-zero layouts; each block is written and read within its size and freed
        // with its layout.
        unsafe {
            let blocks: Vec<*mut u8> = (0..64).map(|_| HugePageAlloc.alloc(layout)).collect();
            for (i, &p) in blocks.iter().enumerate() {
                assert!(!p.is_null());
                std::ptr::write_bytes(p, i as u8, layout.size());
            }
            for (i, &p) in blocks.iter().enumerate() {
                let b = std::slice::from_raw_parts(p, layout.size());
                assert!(b.iter().all(|&x| x == i as u8), "block {i}");
            }
            let advised = HEAP_ADVISED_TO.load(Ordering::Relaxed);
            assert!(advised >= start);
            let first = start.next_multiple_of(HUGE_PAGE);
            if advised > first && advice_shows() {
                let flags = vm_flags(first).expect("the heap's mapping");
                assert!(flags.split(' ').any(|f| f == "hg"), "{flags}");
            }
            for p in blocks {
                HugePageAlloc.dealloc(p, layout);
            }
        }
    }

    #[test]
    fn large_blocks_keep_their_contents_and_get_the_advice() {
        let layout = Layout::from_size_align(5 << 20, 64).unwrap();
        // SAFETY: a non-zero layout; the block is written and read within its size, then
        // grown and freed with the layout it has.
        unsafe {
            let p = HugePageAlloc.alloc(layout);
            assert!(!p.is_null());
            for i in (0..layout.size()).step_by(4096) {
                *p.add(i) = (i / 4096) as u8;
            }
            let inside = (p as usize).next_multiple_of(HUGE_PAGE);
            if advice_shows() {
                let flags = vm_flags(inside).expect("the block's mapping");
                assert!(
                    flags.split(' ').any(|f| f == "hg"),
                    "no huge-page advice: {flags}"
                );
            }
            let q = HugePageAlloc.realloc(p, layout, 9 << 20);
            assert!(!q.is_null());
            for i in (0..layout.size()).step_by(4096) {
                assert_eq!(*q.add(i), (i / 4096) as u8, "byte {i} after growing");
            }
            HugePageAlloc.dealloc(q, Layout::from_size_align(9 << 20, 64).unwrap());
            // Small blocks are the system's own.
            let small = Layout::from_size_align(100, 8).unwrap();
            let s = HugePageAlloc.alloc_zeroed(small);
            assert!(std::slice::from_raw_parts(s, 100).iter().all(|&b| b == 0));
            HugePageAlloc.dealloc(s, small);
        }
    }
}
